"""recsys plugin: adaptive denoising of implicit feedback (T-CE, R-CE) and ProtoDenoise.

The models wrap any registered base model that provides per-example losses
(:meth:`recsys.models.base.Recommender.example_losses`) and replace only how the batch's
per-example losses are reduced; setup, scoring and representations are the base model's.
``gmf`` is the paper's pointwise base (BCE on positives and sampled negatives).
"""

from recsys_denoise.gmf import GMF, GMFConfig
from recsys_denoise.models import RCE, TCE, DenoiseConfig, ProtoDenoise
from recsys_denoise.schedule import (
    drop_rate,
    n_to_drop,
    positive_truncation_keep,
    rce_weights,
    truncation_keep,
)

__all__ = [
    "GMF",
    "RCE",
    "TCE",
    "DenoiseConfig",
    "GMFConfig",
    "ProtoDenoise",
    "drop_rate",
    "n_to_drop",
    "positive_truncation_keep",
    "rce_weights",
    "truncation_keep",
]
