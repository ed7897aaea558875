r"""Denoising wrappers: T-CE, R-CE and ProtoDenoise around any base model.

Each wrapper is a :class:`~recsys.models.base.Recommender` that owns one base model (``base``,
a registered model name; ``base_params``, its hyper-parameters). Set-up, scoring and
representations are the base model's; training asks the base for its per-example losses
(:meth:`~recsys.models.base.Recommender.example_losses`) and replaces only their reduction.

What an "example" is depends on the base model's batch kind:

- pairwise (BPR-MF, LightGCN): one :math:`(u, i, j)` triplet, its loss
  :math:`\ell = -\ln\sigma(\hat{y}_{ui} - \hat{y}_{uj})` averaged over its negatives. The paper
  truncates pointwise BCE over positives and sampled negatives, and never drops a negative;
  with BPR the negative lives inside the triplet, so dropping the largest-loss *triplets* is
  dropping the positives the model finds least plausible against a random negative. Keeping
  the triplet's negative would leave a push-down-only term; we drop the whole triplet.
- positive pairs (BM3): one :math:`(u, i)` pair, its alignment loss.
- pointwise (GMF, the paper's setting): one labelled :math:`(u, i, y)` example, positive
  (:math:`y = 1`) or sampled negative (:math:`y = 0`), its binary cross-entropy. As in the
  authors' code, T-CE drops only positives (the largest :math:`\ell \cdot y`) and R-CE
  weights positives by :math:`\sigma(\hat{y})^\beta` and negatives by
  :math:`(1-\sigma(\hat{y}))^\beta`.

The drop-rate schedule's step is a buffer (``step``), so it is in every checkpoint and a
resumed run continues the schedule where it stopped. Per epoch the wrappers report (through
:meth:`on_epoch_end`, logged as ``train/denoise_*``) how many interactions were dropped, and,
when ``clean_min_rating`` says how to read the dataset's noise flags, the precision and recall
of the drops against them.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError
from recsys.models.base import ModelConfig, Recommender, ScoreFn, build_config
from recsys.models.registry import get_model_class
from recsys_denoise import prototypes as proto
from recsys_denoise.schedule import (
    DropBase,
    drop_rate,
    n_to_drop,
    positive_truncation_keep,
    rce_weights,
    truncation_keep,
)

log = logging.getLogger(__name__)

_SUPPORTED_KINDS = ("pairwise", "pairs", "pointwise")


class DenoiseConfig(ModelConfig):
    """What every denoising wrapper shares: the base model and how to read noise flags."""

    base: str = Field("bpr", validate_default=True)
    """The wrapped model, by registry name (``bpr``, ``lightgcn``, ``bm3``, ``gmf``, ...); it
    must provide per-example losses. ``gmf`` (pointwise BCE) is the paper's setting."""
    base_params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    """The base model's hyper-parameters, validated by its config class (errors name
    ``model.base_params.<key>``); stored with every default filled in."""
    clean_min_rating: float | None = None
    """Diagnostics only: an interaction whose rating is below this is flagged noisy, and the
    drops are scored against the flags (MovieLens: 4; synthetic data, whose ratings are the
    noise flags: 1). Never used for training. None: no flags."""

    @field_validator("base")
    @classmethod
    def _base_usable(cls, value: str) -> str:
        base_cls = get_model_class(value, key="model.base")
        if base_cls.batch_kind not in _SUPPORTED_KINDS:
            raise ValueError(
                f"model.base={value!r} trains on {base_cls.batch_kind!r} batches; denoising "
                f"wraps models with batch kind {', '.join(_SUPPORTED_KINDS)}"
            )
        if base_cls.example_losses is Recommender.example_losses:
            raise ValueError(
                f"model.base={value!r} does not provide per-example losses (example_losses)"
            )
        return value

    @field_validator("base_params")
    @classmethod
    def _base_params_valid(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        base = info.data.get("base")
        if base is None:  # the base itself was invalid, and says so
            return value
        config = build_config(
            get_model_class(base, key="model.base").config_class, value, "model.base_params"
        )
        return config.model_dump(mode="json")


class TCEConfig(DenoiseConfig):
    """Hyper-parameters of :class:`TCE`."""

    max_drop_rate: float = Field(0.2, ge=0.0, lt=1.0)
    r""":math:`\varepsilon_{max}`, the largest drop rate (a share of the batch's positives, or
    of the whole batch: see ``drop_base``)."""
    num_gradual: int = Field(1000, ge=0)
    """:math:`N`, training steps (mini-batches) over which the drop rate rises linearly from
    0 to the maximum."""
    drop_base: DropBase = "positives"
    """``positives``: the rate is a share of the batch's positives. ``batch``: as in the
    authors' code, a share of positives plus sampled negatives, all of it taken from the
    positives (one negative each: twice the rate). With a pointwise base the negatives are
    the batch's own examples (label 0); otherwise those of the pairwise triplets."""


class RCEConfig(DenoiseConfig):
    """Hyper-parameters of :class:`RCE`."""

    beta: float = Field(0.25, ge=0.0)
    r""":math:`\beta` of the weights :math:`\omega = \sigma(\hat{y})^\beta` (paper: 0.05-1,
    0.2-0.3 in the authors' logs)."""


class ProtoDenoiseConfig(TCEConfig):
    """Hyper-parameters of :class:`ProtoDenoise`."""

    modality: str | None = None
    """Item feature space of the prototypes: an item feature table of the dataset by name, or
    ``a+b`` (concatenated). None: collaborative item factors (a truncated SVD of the training
    matrix)."""
    anchor_share: float = Field(0.5, ge=0.0, le=1.0)
    """Share of each user's interactions, closest to the user's prototype, that are anchors
    (never dropped)."""
    min_anchors: int = Field(3, ge=0)
    """Every user has at least this many anchors (all of its items if fewer)."""
    n_contrast: int = Field(20, gt=0)
    """Contrast prototypes: this many other users' prototypes (never the user's own; all
    the other users when there are fewer)."""
    temperature: float = Field(0.1, gt=0.0)
    r""":math:`\tau` of the prototype posterior."""
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    r""":math:`\alpha`, weight of the model's own probability in the clean score
    :math:`\alpha p_{ui} + (1-\alpha) q_{ui}`."""
    clean_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """An interaction can be dropped only when its clean score is below this."""
    candidate_factor: float = Field(1.0, gt=0.0)
    """Drop candidates are the ``candidate_factor * rate`` largest-loss share of the batch
    (1: the T-CE set; more widens the pool the prototype test picks from)."""
    soft_target_beta: float = Field(0.0, ge=0.0, le=1.0)
    r""":math:`\beta` of the soft targets :math:`\tilde{y} = (1-\beta) + \beta q_{ui}` of the
    kept positives (0: hard targets)."""
    svd_dim: int = Field(32, gt=0)
    """Width of the collaborative factors used when ``modality`` is None."""
    seed: int = Field(0, ge=0)
    """Seed of the contrast users and of the SVD start vector (numpy seeds are non-negative)."""


class DenoiseRecommender(Recommender):
    """Shared machinery: delegation to the base, the step buffer, flags and diagnostics."""

    config_class: ClassVar[type[ModelConfig]] = DenoiseConfig
    method: ClassVar[str] = "denoise"
    """Name of the reduced main loss term."""

    def __init__(self, config: ModelConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        # the trainer samples what the base model trains on
        self.batch_kind = get_model_class(self.config.base, key="model.base").batch_kind

    # -- life cycle -------------------------------------------------------------------------
    def check_train_config(self, train: Any) -> None:
        """The base model's own check of the training settings."""
        cfg = self.config
        base_cls = get_model_class(cfg.base, key="model.base")
        base_cls(base_cls.config_class(**cfg.base_params)).check_train_config(train)

    def setup(self, train: sp.csr_array, dataset: Dataset | None = None) -> Recommender:
        """Set up the base model on ``train`` (it initialises itself once) and the buffers."""
        self.n_users, self.n_items = (int(x) for x in train.shape)
        self.train_matrix = train
        self.build(train, dataset)
        return self

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        cfg = self.config
        base_cls = get_model_class(cfg.base, key="model.base")
        self.base = base_cls(base_cls.config_class(**cfg.base_params))
        self.base.setup(train, dataset)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        train = sp.csr_array(train)
        train.sort_indices()
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(train.indptr))
        keys = users * self.n_items + train.indices.astype(np.int64)
        # example -> training interaction: binary search of user * n_items + item
        self.register_buffer("train_keys", torch.from_numpy(keys), persistent=False)
        flags = self._noise_flags(keys, dataset)
        self.register_buffer(
            "noisy", None if flags is None else torch.from_numpy(flags), persistent=False
        )
        self._reset_counters()

    def _noise_flags(self, keys: np.ndarray, dataset: Dataset | None) -> np.ndarray | None:
        threshold = self.config.clean_min_rating
        if threshold is None:
            return None
        if dataset is None or dataset.ratings is None:
            raise ConfigError(
                "model.clean_min_rating is set but the dataset has no ratings to flag noise by"
            )
        if (dataset.n_users, dataset.n_items) != (self.n_users, self.n_items):
            raise ConfigError("model.clean_min_rating: the dataset does not match the split")
        d_users, d_items = dataset.coo()
        d_keys = d_users * dataset.n_items + d_items  # sorted: CSR order
        pos = np.minimum(np.searchsorted(d_keys, keys), len(d_keys) - 1)
        found = d_keys[pos] == keys
        return found & (dataset.ratings[pos] < threshold)

    def reset_parameters(self) -> None:
        self.base.reset_parameters()
        self.step.zero_()

    # -- training ---------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        losses, reg = self.base.example_losses(batch)
        main = self.reduce(batch, losses)
        if self.training:
            self.step += 1
        return {self.method: main, **reg}

    def reduce(self, batch: dict[str, Tensor], losses: Tensor) -> Tensor:
        """The scalar main loss from the per-example losses ``[B]`` (subclasses)."""
        return losses.mean()

    def example_index(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Position in the training matrix's stored entries of each example ``[B]``, and
        whether it is a training interaction at all (a loss on held-out pairs has none)."""
        users = batch["user"]
        items = batch["pos"] if "pos" in batch else batch["item"]
        keys = users * self.n_items + items
        index = torch.searchsorted(self.train_keys, keys).clamp_max(len(self.train_keys) - 1)
        return index, self.train_keys[index] == keys

    @staticmethod
    def positives(batch: dict[str, Tensor]) -> Tensor | None:
        """Which examples of a pointwise batch are positives ``[B]`` (bool); None for the
        other batch kinds, whose examples are all positives."""
        label = batch.get("label")
        return None if label is None else label > 0.5

    @staticmethod
    def n_negatives(batch: dict[str, Tensor]) -> int:
        neg = batch.get("neg")
        if neg is None:
            return 0
        return int(neg.shape[1]) if neg.dim() == 2 else 1

    # -- diagnostics ------------------------------------------------------------------------
    def _reset_counters(self) -> None:
        self._counts: dict[str, Tensor] = {}

    def _count(self, name: str, value: Tensor) -> None:
        value = value.detach().to(torch.float64)
        self._counts[name] = self._counts[name] + value if name in self._counts else value

    def record_drops(self, batch: dict[str, Tensor], dropped: Tensor) -> None:
        """Count examples, drops and (with flags) noisy ones among them, without a sync.
        In a pointwise batch only the positives count as examples (negatives are never
        dropped, nor flagged)."""
        positive = self.positives(batch)
        if positive is None:
            self._count("seen", torch.tensor(float(len(dropped))))
        else:
            self._count("seen", positive.sum())
        self._count("dropped", dropped.sum())
        if self.noisy is not None:
            index, found = self.example_index(batch)
            noisy = self.noisy[index] & found
            self._count("noisy", noisy.sum())
            self._count("dropped_noisy", (noisy & dropped).sum())

    def current_drop_rate(self) -> float:
        return 0.0

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """The epoch's drop statistics (``denoise_*``); counters restart for the next epoch.

        ``dropped``: interactions dropped this epoch; ``dropped_share``: their share of the
        examples seen (with a pointwise base: of the positives seen); with noise flags,
        ``noise_rate`` (share of noisy examples seen), ``drop_precision`` (noisy share of the
        dropped) and ``drop_recall`` (share of the noisy examples that were dropped).
        """
        c = {k: float(v) for k, v in self._counts.items()}
        self._reset_counters()
        out = {"denoise_drop_rate": self.current_drop_rate()}
        if "seen" in c:
            seen = max(c["seen"], 1.0)
            out["denoise_dropped"] = c["dropped"]
            out["denoise_dropped_share"] = c["dropped"] / seen
            if "noisy" in c:
                out["denoise_noise_rate"] = c["noisy"] / seen
                out["denoise_drop_precision"] = c["dropped_noisy"] / max(c["dropped"], 1.0)
                out["denoise_drop_recall"] = c["dropped_noisy"] / max(c["noisy"], 1.0)
            for key in ("weight_noisy", "weight_clean"):
                if key in c:
                    n = c["noisy"] if key == "weight_noisy" else c["seen"] - c["noisy"]
                    out[f"denoise_{key}"] = c[key] / max(n, 1.0)
        return out

    # -- scoring: the base model's ---------------------------------------------------------
    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        return self.base.scorer(history)

    def representations(self) -> dict[str, Tensor]:
        self.check_fitted()
        return self.base.representations()

    def scorer_from(self, representations: dict[str, Tensor]) -> ScoreFn:
        self.check_fitted()
        return self.base.scorer_from(representations)


class TCE(DenoiseRecommender):
    r"""Truncated loss (T-CE) from `"Denoising Implicit Feedback for Recommendation"
    <https://arxiv.org/abs/2006.04153>`_ (Wang et al., WSDM 2021), around any base model.

    .. math::
        \varepsilon(t) = \varepsilon_{max}\min(t/N, 1),\qquad
        \mathcal{L} = \frac{1}{|K_t|}\sum_{b\in K_t}\ell_b + \sum_k R_k

    where :math:`K_t` keeps all but the :math:`\lfloor\varepsilon(t) B\rfloor` largest
    per-example losses :math:`\ell_b` of the batch (see
    :func:`~recsys_denoise.schedule.n_to_drop` for ``drop_base``) and :math:`R_k` are the base
    model's regularisation terms. :math:`t` counts training batches (a checkpointed buffer).
    With a pointwise base (``gmf``) only positives are dropped, the largest
    :math:`\ell_b y_b` (:func:`~recsys_denoise.schedule.positive_truncation_keep`), and the
    mean runs over the kept positives and all the negatives, as in the authors' code.

    Shapes:
        - loss: the base model's batch -> scalar terms ``tce`` plus the base's regularisers
        - score: the base model's
    """

    name = "tce"
    config_class = TCEConfig
    method = "tce"

    def current_drop_rate(self) -> float:
        cfg = self.config
        return drop_rate(int(self.step), cfg.max_drop_rate, cfg.num_gradual)

    def keep_mask(self, batch: dict[str, Tensor], losses: Tensor, rate: float) -> Tensor:
        """T-CE's mask ``[B]``: False on the largest-loss examples at drop rate ``rate``
        (``drop_base`` units), among the positives only in a pointwise batch."""
        positive = self.positives(batch)
        if positive is not None:
            return positive_truncation_keep(losses, positive, rate, self.config.drop_base)
        n_drop = n_to_drop(len(losses), rate, self.n_negatives(batch), self.config.drop_base)
        return truncation_keep(losses, n_drop)

    def reduce(self, batch: dict[str, Tensor], losses: Tensor) -> Tensor:
        keep = self.keep_mask(batch, losses, self.current_drop_rate())
        if self.training:
            self.record_drops(batch, ~keep)
        return losses[keep].mean()


class RCE(DenoiseRecommender):
    r"""Reweighted loss (R-CE) from `"Denoising Implicit Feedback for Recommendation"
    <https://arxiv.org/abs/2006.04153>`_ (Wang et al., WSDM 2021), around any base model.

    .. math::
        \mathcal{L} = \frac{1}{B}\sum_b \operatorname{sg}(\omega_b)\,\ell_b + \sum_k R_k,
        \qquad \omega_b = e^{-\beta\ell_b}

    For a negative log-likelihood :math:`\ell = -\ln p` this is the paper's
    :math:`\omega = p^\beta` (:math:`p = \sigma(\hat{y}_{ui})` for BCE,
    :math:`\sigma(\hat{y}_{ui} - \hat{y}_{uj})` for BPR); for BM3's alignment loss it is the
    same monotone down-weighting of hard examples. The authors' code also reweights sampled
    negatives by :math:`(1-\sigma(\hat{y}))^\beta`: with a pointwise base (``gmf``) that is
    what :math:`e^{-\beta\ell}` gives a negative, whose BCE is
    :math:`-\ln(1-\sigma(\hat{y}))`; in a BPR triplet the negative shares the positive's
    weight. Nothing is dropped; with noise flags the epoch reports the mean weight of noisy and
    of clean positives (``denoise_weight_noisy`` / ``denoise_weight_clean``).

    Shapes:
        - loss: the base model's batch -> scalar terms ``rce`` plus the base's regularisers
        - score: the base model's
    """

    name = "rce"
    config_class = RCEConfig
    method = "rce"

    def reduce(self, batch: dict[str, Tensor], losses: Tensor) -> Tensor:
        weights = rce_weights(losses, self.config.beta)
        if self.training:
            self.record_drops(batch, torch.zeros_like(losses, dtype=torch.bool))
            if self.noisy is not None:
                index, found = self.example_index(batch)
                noisy = self.noisy[index] & found
                clean = ~noisy
                positive = self.positives(batch)
                if positive is not None:  # the negatives are neither
                    clean = clean & positive
                self._count("weight_noisy", (weights * noisy).sum())
                self._count("weight_clean", (weights * clean).sum())
        return (weights * losses).mean()


class ProtoDenoise(TCE):
    r"""Prototype-gated truncation ("ProtoDenoise"), after CAPro (`Qin et al., NeurIPS 2023
    <https://arxiv.org/abs/2310.09761>`_): loss evidence and item-feature evidence must agree
    before an interaction is dropped.

    At set-up, with unit-norm item features :math:`\mathbf{e}_i` (a modality of the dataset,
    or collaborative SVD factors), each user gets a robust prototype :math:`\mathbf{p}_u`
    (:func:`~recsys_denoise.prototypes.user_prototypes`) and each training interaction a
    similarity :math:`s_{ui} = \cos(\mathbf{e}_i, \mathbf{p}_u)`. A user's
    :math:`k_u = \max(k_{min}, \lceil a |I_u|\rceil)` most similar interactions are anchors.
    The prototype posterior :math:`q_{ui}` (:func:`~recsys_denoise.prototypes.contrast_posterior`)
    says how much closer item :math:`i` is to :math:`\mathbf{p}_u` than to other users'
    prototypes. In a batch, with :math:`p_{ui} = e^{-\ell_{ui}}` the model's probability
    (:math:`\sigma(\hat{y}_{ui}-\hat{y}_{uj})` for BPR),

    .. math::
        \text{drop}(u,i) \iff (u,i)\notin\text{anchors} \;\wedge\;
        \alpha p_{ui} + (1-\alpha) q_{ui} < \theta \;\wedge\;
        \ell_{ui} \in \text{the } \lfloor c\,\varepsilon(t) B\rfloor \text{ largest of the batch}

    (:math:`\theta` = ``clean_threshold``, :math:`c` = ``candidate_factor``; with a pointwise
    base the candidates are positives only, as in :class:`TCE`). With
    ``soft_target_beta`` :math:`\beta > 0`, kept positives train towards
    :math:`\tilde{y}_{ui} = (1-\beta) + \beta q_{ui}` with
    :math:`-\tilde{y}\ln p - (1-\tilde{y})\ln(1-p)`, a cheap stand-in for CAPro's collective
    bootstrapping: the target borrows from the user's history through its prototype (exact
    only for bases whose loss is :math:`-\ln p`: BPR-MF, LightGCN).

    Differences from the notes' proposal (``plugin-methods.md`` a.4): one feature space (use
    ``a+b`` to concatenate modalities) instead of separate text and image prototypes; the
    prototypes are computed once from all training interactions, not refreshed from the kept
    ones; the loss test is the batch's top fraction, as in T-CE, not per user; the contrast
    prototypes are pooled into their log-mean-exp, so the keep test is a binary one. The
    contrast set is one seeded sample of other users' prototypes, shared by all users except
    that a user drawn into it is replaced by a spare draw, so no user contrasts with itself.

    The defaults are T-CE's, not the proposal's: ``max_drop_rate`` 0.2 (a.4: 0.1),
    ``num_gradual`` 1000 steps (a.4: 10k) and ``drop_base="positives"``. There is no warm-up
    gate (a.4: prototypes from epoch 2, cleaning from epoch 4). The prototypes do not depend
    on the model, so they are ready at step 0; only the T-CE ramp (:math:`\varepsilon(0) = 0`)
    delays the drops. For a run closer to the proposal, set ``model.max_drop_rate=0.1`` and
    ``model.num_gradual=10000``.

    Shapes:
        - loss: the base model's batch -> scalar terms ``proto`` plus the base's regularisers
        - score: the base model's
    """

    name = "protodenoise"
    config_class = ProtoDenoiseConfig
    method = "proto"
    # anchors and prototypes come from an SVD and a threshold; scoring never reads them
    unfingerprinted_buffers = frozenset({"anchor", "proto_q"})

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        super().build(train, dataset)
        cfg = self.config
        train = sp.csr_array(train)
        train.sort_indices()
        if cfg.modality is None:
            features = proto.collaborative_features(train, cfg.svd_dim, cfg.seed)
        else:
            if dataset is None:
                raise ConfigError(
                    f"model.modality={cfg.modality!r} needs the dataset's item features: "
                    "call setup(train, dataset)"
                )
            from recsys.data.features import modality_matrix

            features = modality_matrix(dataset, cfg.modality, key="model.modality")
        items = proto.normalise_features(features)
        prototypes, sim = proto.user_prototypes(train, items)
        anchor = proto.anchors(train, sim, cfg.anchor_share, cfg.min_anchors)
        q = proto.contrast_posterior(
            train, items, prototypes, sim, cfg.n_contrast, cfg.temperature, cfg.seed
        )
        log.info(
            "ProtoDenoise: prototypes in %s space (%d-d), %d of %d interactions are anchors",
            cfg.modality or "collaborative SVD",
            items.shape[1],
            int(anchor.sum()),
            len(anchor),
        )
        # derived from the data at set-up, so not saved in checkpoints
        self.register_buffer("anchor", torch.from_numpy(anchor), persistent=False)
        self.register_buffer("proto_q", torch.from_numpy(q), persistent=False)

    def reduce(self, batch: dict[str, Tensor], losses: Tensor) -> Tensor:
        cfg = self.config
        rate = min(cfg.candidate_factor * self.current_drop_rate(), 1.0)
        # in a pointwise batch the candidates are positives only
        candidate = ~self.keep_mask(batch, losses, rate)
        positive = self.positives(batch)
        index, found = self.example_index(batch)
        # an example outside the training matrix has no prototype evidence: neutral, no anchor
        q = torch.where(found, self.proto_q[index], 0.5)
        with torch.no_grad():
            p = torch.exp(-losses)
            clean = cfg.alpha * p + (1.0 - cfg.alpha) * q
        anchor = self.anchor[index] & found
        dropped = candidate & ~anchor & (clean < cfg.clean_threshold)
        if self.training:
            self.record_drops(batch, dropped)
        keep = ~dropped
        kept = losses[keep]
        if cfg.soft_target_beta > 0:
            target = (1.0 - cfg.soft_target_beta) + cfg.soft_target_beta * q[keep]
            # -ln(1 - p) with p = exp(-l): -log(-expm1(-l)); l is clamped away from 0
            neg_log = -torch.log(-torch.expm1(-kept.clamp_min(1e-6)))
            soft = target * kept + (1.0 - target) * neg_log
            # a pointwise batch's negatives keep their hard target 0
            kept = soft if positive is None else torch.where(positive[keep], soft, kept)
        return kept.mean()

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        out = super().on_epoch_end(epoch)
        out["denoise_anchor_share"] = float(self.anchor.float().mean())
        if self.noisy is not None:
            # how clean the protected set is: noise share among anchors vs overall
            out["denoise_anchor_noise_rate"] = float(
                (self.noisy & self.anchor).sum() / self.anchor.sum().clamp_min(1)
            )
        return out
