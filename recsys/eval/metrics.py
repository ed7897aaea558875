r"""Top-K ranking metrics, computed for many users and every cutoff at once.

The definitions follow RecBole 1.2.1 (``recbole/evaluator/metrics.py``), so numbers are
comparable with papers that report RecBole's full-ranking protocol. For one user :math:`u`
with held-out items :math:`G_u` (binary relevance) and ranked list :math:`R_u` (after masking
training items), the hit indicator at rank :math:`r` is

.. math::
    h_r = \mathbb{1}\left[R_u[r] \in G_u\right], \qquad r = 1, \dots, K.

A rank slot whose item has score :math:`-\infty` (masked, or the user has fewer than
:math:`K` rankable items) is *empty*: it never counts as a hit, is not part of the item
coverage and is left out of the popularity average.

Each per-user metric is a small class with a ``name`` and the formula in its docstring,
registered in :data:`METRICS` by :func:`register_metric`. The evaluator computes a
:class:`RankedBatch` once per user batch (one ``torch.topk`` at the largest cutoff), and every
metric reads every cutoff from the same ``[B, max K]`` hit matrix through cumulative sums.
Metric keys are written ``<name>_at_<K>`` (``ndcg_at_20``), because MLflow rejects ``@``.
"""

from __future__ import annotations

import numbers
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from recsys.errors import ConfigError

__all__ = [
    "MAP",
    "METRICS",
    "MRR",
    "NDCG",
    "AggregateMetric",
    "AveragePopularity",
    "Hit",
    "ItemCoverage",
    "Metric",
    "Precision",
    "RankedBatch",
    "Recall",
    "RecallMin",
    "UserMetric",
    "check_cutoff",
    "metric_key",
    "parse_metric_key",
    "register_metric",
    "validate_metric_name",
]


@dataclass(eq=False)
class RankedBatch:
    r"""The top-K lists of one batch of users, the only input of every metric.

    Args:
        hits (Tensor): ``bool [B, K]``, :math:`h_r` (``False`` on empty slots).
        valid (Tensor): ``bool [B, K]``, the slot holds a real recommendation (finite score).
        items (Tensor): ``long [B, K]``, item indices in rank order (arbitrary on empty slots).
        n_truth (Tensor): ``[B]``, :math:`|G_u|` (always :math:`\geq 1`).
        cutoffs (Tensor): ``long [C]``, the cutoffs :math:`K_1 < \dots < K_C`,
            :math:`K_C = K`.
        item_popularity (Tensor, optional): ``[n_items]`` training interaction counts.
        dtype (torch.dtype): floating type of the results (float64, or float32 on MPS).

    Shapes:
        Every per-user metric returns ``[B, C]``: column :math:`j` is the metric at
        :math:`K_j`.
    """

    hits: Tensor
    valid: Tensor
    items: Tensor
    n_truth: Tensor
    cutoffs: Tensor
    item_popularity: Tensor | None = None
    dtype: torch.dtype = torch.float64

    def at(self, cumulative: Tensor) -> Tensor:
        r"""Columns :math:`K_1 - 1, \dots, K_C - 1` of a ``[B, K]`` cumulative tensor."""
        return cumulative[:, self.cutoffs - 1]

    @cached_property
    def hits_f(self) -> Tensor:
        """:math:`h_r` as floats, ``[B, K]``."""
        return self.hits.to(self.dtype)

    @cached_property
    def ranks(self) -> Tensor:
        r""":math:`r = 1, \dots, K` as floats, ``[K]``."""
        return torch.arange(1, self.hits.shape[1] + 1, device=self.hits.device, dtype=self.dtype)

    @cached_property
    def cum_hits(self) -> Tensor:
        r""":math:`\sum_{s \leq r} h_s`, ``[B, K]``."""
        return self.hits_f.cumsum(dim=1)

    @cached_property
    def hits_at_k(self) -> Tensor:
        r""":math:`\sum_{r \leq K_j} h_r`, ``[B, C]``."""
        return self.at(self.cum_hits)

    @cached_property
    def k(self) -> Tensor:
        """The cutoffs as floats, ``[C]``."""
        return self.cutoffs.to(self.dtype)

    @cached_property
    def n_truth_f(self) -> Tensor:
        """:math:`|G_u|` as floats, ``[B, 1]``."""
        return self.n_truth.to(self.dtype).unsqueeze(1)

    @cached_property
    def min_truth_k(self) -> Tensor:
        r""":math:`\min(|G_u|, K_j)`, ``[B, C]``."""
        return torch.minimum(self.n_truth_f, self.k.unsqueeze(0))


class Metric(ABC):
    """Base of all metrics; subclasses set :attr:`name` and register with
    :func:`register_metric`.

    Attributes:
        name (str): the key prefix, ``<name>_at_<K>``.
        needs_popularity (bool): the metric reads ``item_popularity`` and is skipped when the
            evaluator is not given one.
        selectable (bool): higher is better, so training may choose its epoch by it
            (``train.valid_metric``); False for descriptive metrics (popularity, coverage).
    """

    name: ClassVar[str]
    needs_popularity: ClassVar[bool] = False
    selectable: ClassVar[bool] = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class UserMetric(Metric):
    """A metric defined per user and averaged over the evaluated users."""

    @abstractmethod
    def __call__(self, batch: RankedBatch) -> Tensor:
        """Per-user values at every cutoff, ``[B, C]``."""


class AggregateMetric(Metric):
    """A metric of the union of all users' lists (not a mean of per-user values).

    The evaluator calls :meth:`init_state` once, :meth:`update` per batch (on the device of
    the scores, without synchronising) and :meth:`result` at the end.
    """

    @abstractmethod
    def init_state(self, n_items: int, max_k: int, device: torch.device) -> Tensor:
        """The accumulator before the first batch."""

    @abstractmethod
    def update(self, state: Tensor, batch: RankedBatch) -> None:
        """Fold one batch into ``state`` in place."""

    @abstractmethod
    def result(self, state: Tensor, cutoffs: Tensor, n_items: int) -> Tensor:
        """The value at every cutoff, ``[C]``."""


M = TypeVar("M", bound=type[Metric])

METRICS: dict[str, type[Metric]] = {}
"""Registry of metric classes by name; :func:`register_metric` adds to it."""


def register_metric(cls: M) -> M:
    """Class decorator that adds a :class:`Metric` subclass to :data:`METRICS`.

    Raises:
        ConfigError: the name is taken by another class or is not a lower-case identifier.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ConfigError(f"metric name {name!r} of {cls.__name__} must be a lower-case identifier")
    if "_at_" in name:
        raise ConfigError(f"metric name {name!r} must not contain '_at_'")
    if name in METRICS and METRICS[name] is not cls:
        raise ConfigError(f"metric name {name!r} is already registered by {METRICS[name]}")
    METRICS[name] = cls
    return cls


@register_metric
class Recall(UserMetric):
    r"""Recall (RecBole ``Recall``): the share of the held-out items found in the top :math:`K`.

    .. math::
        \mathrm{Recall@K}(u) = \frac{\sum_{r=1}^{K} h_r}{|G_u|}
    """

    name = "recall"

    def __call__(self, batch: RankedBatch) -> Tensor:
        return batch.hits_at_k / batch.n_truth_f


@register_metric
class RecallMin(UserMetric):
    r"""Recall normalised by the best reachable count (not in RecBole; off by default).

    Also called "truncated recall": it reaches 1 whenever the list is as good as possible,
    even when :math:`|G_u| > K`.

    .. math::
        \mathrm{RecallMin@K}(u) = \frac{\sum_{r=1}^{K} h_r}{\min(K, |G_u|)}
    """

    name = "recall_min"

    def __call__(self, batch: RankedBatch) -> Tensor:
        return batch.hits_at_k / batch.min_truth_k


@register_metric
class Precision(UserMetric):
    r"""Precision (RecBole ``Precision``): the share of the :math:`K` slots that are hits.

    Empty slots count in the denominator, as in RecBole.

    .. math::
        \mathrm{Precision@K}(u) = \frac{1}{K} \sum_{r=1}^{K} h_r
    """

    name = "precision"

    def __call__(self, batch: RankedBatch) -> Tensor:
        return batch.hits_at_k / batch.k


@register_metric
class Hit(UserMetric):
    r"""Hit ratio (RecBole ``Hit``): whether any held-out item is in the top :math:`K`.

    .. math::
        \mathrm{Hit@K}(u) = \mathbb{1}\left[\sum_{r=1}^{K} h_r > 0\right]
    """

    name = "hit"

    def __call__(self, batch: RankedBatch) -> Tensor:
        return (batch.hits_at_k > 0).to(batch.dtype)


@register_metric
class MRR(UserMetric):
    r"""Mean reciprocal rank (RecBole ``MRR``) of the first hit.

    .. math::
        \mathrm{MRR@K}(u) = \frac{1}{\min\{r \leq K : h_r = 1\}}
        \quad (0 \text{ if there is no hit within } K)

    Computed for every cutoff as :math:`\sum_{r \leq K} [h_r = 1 \wedge
    \sum_{s \leq r} h_s = 1] / r`: only the first hit contributes.
    """

    name = "mrr"

    def __call__(self, batch: RankedBatch) -> Tensor:
        first = batch.hits & (batch.cum_hits == 1)
        return batch.at((first.to(batch.dtype) / batch.ranks).cumsum(dim=1))


def _idcg_table(max_k: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    r""":math:`\mathrm{IDCG}(n) = \sum_{r=1}^{n} 1/\log_2(r+1)` for :math:`n = 0..K`."""
    ranks = torch.arange(1, max_k + 1, device=device, dtype=dtype)
    table = torch.zeros(max_k + 1, device=device, dtype=dtype)
    table[1:] = (1.0 / torch.log2(ranks + 1.0)).cumsum(dim=0)
    return table


@register_metric
class NDCG(UserMetric):
    r"""Normalised discounted cumulative gain (RecBole ``NDCG``), binary relevance.

    .. math::
        \mathrm{DCG@K}(u) = \sum_{r=1}^{K} \frac{h_r}{\log_2(r + 1)}, \qquad
        \mathrm{IDCG@K}(u) = \sum_{r=1}^{\min(|G_u|, K)} \frac{1}{\log_2(r + 1)}, \qquad
        \mathrm{NDCG@K}(u) = \frac{\mathrm{DCG@K}(u)}{\mathrm{IDCG@K}(u)}
    """

    name = "ndcg"

    def __call__(self, batch: RankedBatch) -> Tensor:
        dcg = (batch.hits_f / torch.log2(batch.ranks + 1.0)).cumsum(dim=1)
        table = _idcg_table(batch.hits.shape[1], batch.hits.device, batch.dtype)
        idcg = table[batch.min_truth_k.long()]
        return batch.at(dcg) / idcg


@register_metric
class MAP(UserMetric):
    r"""Mean average precision, RecBole's variant (RecBole ``MAP``).

    .. math::
        \mathrm{MAP@K}(u) = \frac{1}{\min(|G_u|, K)}
        \sum_{r=1}^{K} h_r \, \mathrm{Precision@r}(u)
    """

    name = "map"

    def __call__(self, batch: RankedBatch) -> Tensor:
        precision_at_r = batch.cum_hits / batch.ranks
        return batch.at((batch.hits_f * precision_at_r).cumsum(dim=1)) / batch.min_truth_k


@register_metric
class AveragePopularity(UserMetric):
    r"""Average popularity of the recommended items (RecBole ``AveragePopularity``).

    With :math:`\phi(i)` the number of training interactions of item :math:`i` and
    :math:`R_u^K` the non-empty slots of the top :math:`K`:

    .. math::
        \mathrm{AveragePopularity@K}(u) = \frac{1}{|R_u^K|} \sum_{i \in R_u^K} \phi(i)

    (0 when :math:`R_u^K` is empty). Without empty slots :math:`|R_u^K| = K`, RecBole's
    denominator. Needs ``item_popularity``.
    """

    name = "average_popularity"
    needs_popularity = True
    selectable = False  # describes a list; the most popular epoch is not the best one

    def __call__(self, batch: RankedBatch) -> Tensor:
        if batch.item_popularity is None:
            raise ConfigError("average_popularity needs item_popularity")
        valid = batch.valid.to(batch.dtype)
        popularity = batch.item_popularity.to(batch.dtype)[batch.items] * valid
        total = batch.at(popularity.cumsum(dim=1))
        count = batch.at(valid.cumsum(dim=1)).clamp(min=1.0)
        return total / count


@register_metric
class ItemCoverage(AggregateMetric):
    r"""Item coverage (RecBole ``ItemCoverage``): the share of the catalogue recommended to at
    least one evaluated user.

    .. math::
        \mathrm{ItemCoverage@K} = \frac{\left|\bigcup_{u} R_u^K\right|}{|I|}

    where :math:`R_u^K` holds the non-empty slots of user :math:`u`'s top :math:`K` and
    :math:`|I|` is the number of items (columns of the truth matrix). RecBole divides by its
    item count including the padding id, :math:`|I| + 1`, so its value is
    :math:`|I| / (|I| + 1)` times this one (0.9994 on MovieLens-100k's 1682 items).

    The state is the best rank at which each item appeared (``max_k + 1`` if never, one extra
    entry collects empty slots), so one ``scatter_reduce`` per batch serves every cutoff.
    """

    name = "item_coverage"
    selectable = False  # describes the lists together; more coverage is not more accuracy

    def init_state(self, n_items: int, max_k: int, device: torch.device) -> Tensor:
        return torch.full((n_items + 1,), max_k + 1, dtype=torch.long, device=device)

    def update(self, state: Tensor, batch: RankedBatch) -> None:
        n_items = state.shape[0] - 1
        items = torch.where(batch.valid, batch.items, n_items).reshape(-1)
        ranks = torch.arange(1, batch.items.shape[1] + 1, device=state.device)
        ranks = ranks.expand_as(batch.items).reshape(-1)
        state.scatter_reduce_(0, items, ranks, reduce="amin")

    def result(self, state: Tensor, cutoffs: Tensor, n_items: int) -> Tensor:
        best = state[:n_items]
        covered = (best.unsqueeze(0) <= cutoffs.unsqueeze(1)).sum(dim=1)
        return covered.double() / max(n_items, 1)


def metric_key(name: str, k: int) -> str:
    """The result key of metric ``name`` at cutoff ``k``: ``ndcg_at_20``."""
    return f"{name}_at_{k}"


def parse_metric_key(key: str) -> tuple[str, int]:
    """Split ``ndcg_at_20`` into ``("ndcg", 20)``; see :func:`validate_metric_name`."""
    validate_metric_name(key)
    name, _, k = key.rpartition("_at_")
    return name, int(k)


def validate_metric_name(
    name: str,
    topk: Sequence[int] | None = None,
    metrics: Sequence[str] | None = None,
) -> None:
    """Check that ``name`` is a metric key ``<metric>_at_<K>``.

    Valid iff ``<metric>`` is registered in :data:`METRICS` (and, when ``metrics`` is given,
    among them) and ``<K>`` is a positive integer (and, when ``topk`` is given, among them).
    Use the two optional arguments to check a key against one evaluator's configuration, as an
    early-stopping metric must be.

    Raises:
        ConfigError: naming the bad value and listing the valid names.
    """
    allowed = list(metrics) if metrics is not None else list(METRICS)
    if topk is not None:
        valid_names = ", ".join(metric_key(m, k) for m in allowed for k in topk)
    else:
        valid_names = "<metric>_at_<K> with K a positive integer and <metric> one of " + ", ".join(
            allowed
        )
    if not isinstance(name, str):
        raise ConfigError(f"metric name {name!r} is not a string; valid names: {valid_names}")
    metric, sep, k_text = name.rpartition("_at_")
    if not sep or metric not in METRICS or metric not in allowed:
        raise ConfigError(f"unknown metric name {name!r}; valid names: {valid_names}")
    if not re.fullmatch(r"[0-9]+", k_text) or int(k_text) <= 0:
        raise ConfigError(
            f"metric name {name!r} has cutoff {k_text!r}, not a positive integer; "
            f"valid names: {valid_names}"
        )
    if topk is not None and int(k_text) not in topk:
        raise ConfigError(
            f"metric name {name!r} has cutoff {k_text}, not one of the evaluated cutoffs "
            f"{list(topk)}; valid names: {valid_names}"
        )


def check_cutoff(k: object, what: str = "topk") -> int:
    """Return ``k`` as an ``int`` if it is a positive integer, else raise
    :class:`ConfigError` naming it (``bool`` and ``float`` are rejected)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or int(k) <= 0:
        raise ConfigError(f"{what} cutoff {k!r} is not a positive integer")
    return int(k)
