"""Evaluation: top-K ranking metrics and the full-ranking :class:`Evaluator`."""

from recsys.eval.evaluator import DEFAULT_METRICS, Evaluator, ScoreFn
from recsys.eval.metrics import (
    METRICS,
    AggregateMetric,
    Metric,
    RankedBatch,
    UserMetric,
    metric_key,
    parse_metric_key,
    register_metric,
    validate_metric_name,
)

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "AggregateMetric",
    "Evaluator",
    "Metric",
    "RankedBatch",
    "ScoreFn",
    "UserMetric",
    "metric_key",
    "parse_metric_key",
    "register_metric",
    "validate_metric_name",
]
