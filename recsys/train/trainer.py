"""One Trainer for every model: the epoch loop, early stopping, checkpoints and resume.

The trainer owns the loop; a model only defines :meth:`Recommender.loss` for a batch of its
declared kind. Each epoch is one pass of the model's sampler, then (every ``eval_every``
epochs) a full-ranking validation. The best validation epoch is saved atomically to
``checkpoints/best.pt``; the full training state (model, optimiser, RNG, counters) to
``checkpoints/last.pt`` after every epoch, so an interrupted run resumes where it stopped and
gives the same result as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn
from tqdm.auto import tqdm

from recsys.data.samplers import HeldOutPairwiseSampler, Sampler, make_sampler
from recsys.data.split import Split
from recsys.errors import ConfigError, DataError, NonFiniteScoresError, TrainingDivergedError
from recsys.eval.evaluator import Evaluator, validate_metric_name
from recsys.eval.metrics import METRICS
from recsys.models.base import Recommender
from recsys.train.checkpoint import (
    load_checkpoint,
    load_weights,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from recsys.train.optim import LazyAdam

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Optimisation and early-stopping settings (defaults follow RecBole 1.2.1)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epochs: int = Field(300, ge=1)
    """Maximum number of epochs."""
    batch_size: int = Field(2048, gt=0)
    """Training examples per batch."""
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw", "sgd", "adagrad", "sparse_adam"] = "adam"
    """``sparse_adam`` (lazy Adam on row-sparse embedding gradients) makes a step cost the
    rows in the batch instead of the whole table: use it for large catalogues, with models that
    support it (BPR)."""
    n_negatives: int = Field(1, gt=0)
    """Negatives per positive for pairwise and pointwise models."""
    eval_every: int = Field(1, gt=0)
    """Validate every this many epochs."""
    patience: int = Field(10, ge=1)
    """Stop after this many validations in a row without improvement; it counts validations
    (every ``eval_every`` epochs), not epochs. Only a strictly higher ``valid_metric`` is an
    improvement: a tie keeps the earlier best epoch and counts as a validation without
    improvement. (RecBole's ``stopping_step`` differs on both: a tie replaces its best epoch,
    and it stops after ``stopping_step + 1`` validations without improvement.)"""
    valid_metric: str = "ndcg_at_10"
    """Metric that selects the best epoch, e.g. ``ndcg_at_10`` or ``recall_at_20``."""
    seed: int = Field(2020, ge=0)
    """Seeds parameter initialisation and sampling."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``cuda:N``."""
    num_threads: int | None = Field(None, gt=0)
    """CPU threads for torch (a process-wide setting). None: ``recsys train`` uses every core
    this process may run on; a :class:`Trainer` built in Python leaves torch's setting as it
    is."""
    clip_grad_norm: float | None = Field(None, gt=0)
    """Clip the total 2-norm of the optimised parameters' gradients (row-sparse ones
    included) to this before each step; None does not clip."""
    progress: bool = True
    """Show progress bars."""

    @field_validator("valid_metric")
    @classmethod
    def _metric_known(cls, value: str) -> str:
        validate_metric_name(value)
        metric = value.rpartition("_at_")[0]
        if not METRICS[metric].selectable:
            choices = ", ".join(name for name, m in METRICS.items() if m.selectable)
            raise ValueError(
                f"{metric} describes the recommendations rather than their accuracy, and the "
                f"best epoch is the one that maximises train.valid_metric; choose one of "
                f"{choices} (at a cutoff K)"
            )
        return value

    @field_validator("device")
    @classmethod
    def _device_valid(cls, value: str) -> str:
        try:
            torch.device(value)
        except RuntimeError as exc:
            raise ValueError(f"not a torch device: {value!r}") from exc
        return value


@dataclass
class EpochReport:
    """What one epoch produced; passed to every callback."""

    epoch: int
    train: dict[str, float]
    valid: dict[str, float] | None
    seconds: float
    is_best: bool
    best_epoch: int
    best_value: float


@dataclass
class TrainResult:
    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


Callback = Callable[[EpochReport], None]


def cannot_fold_in(model_name: str) -> ConfigError:
    """The error for ``split.strategy=heldout_users`` with a model that cannot score users it
    was not trained on (the trainer's check, and ``recsys tune``'s before Ray starts)."""
    return ConfigError(
        f"model {model_name!r} does not fold in users it did not train on, so it cannot score "
        "the held-out users of split.strategy=heldout_users; use a fold-in model (e.g. itemknn, "
        "multvae, ease, or twotower with model.use_user_id=false; dnis folds in when its base "
        "does) or another split strategy"
    )


def resolve_device(device: str) -> torch.device:
    """The torch device for a device string; asking for CUDA without it is a clear error."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device!r} but CUDA is not available on this machine")
    return dev


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) for reproducible initialisation."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def train_step(
    model: Recommender,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    clip_grad_norm: float | None = None,
) -> dict[str, float]:
    """zero_grad -> loss terms -> sum -> backward -> (clip) -> step; returns detached terms."""
    optimizer.zero_grad(set_to_none=True)
    terms = model.loss(batch)
    total = sum(terms.values())
    if not torch.isfinite(total):
        raise TrainingDivergedError(
            f"loss became {total.item()} ({ {k: v.item() for k, v in terms.items()} }); "
            "lower train.learning_rate or check the data"
        )
    total.backward()
    if clip_grad_norm is not None:
        clip_gradients(optimizer, clip_grad_norm)
    optimizer.step()
    out = {k: float(v.detach()) for k, v in terms.items()}
    out["loss"] = float(total.detach())
    return out


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """Scale the gradients of the parameters ``optimizer`` steps to total 2-norm ``max_norm``.

    Only the optimiser's own parameters count: parameters it does not step (a model's
    auxiliary parameters, which keep the gradient of their last outer step) neither enter the
    norm nor get scaled. Row-sparse gradients (``train.optimizer=sparse_adam``) are clipped
    too, by the norm of their coalesced rows.
    """
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    norms = [
        torch.linalg.vector_norm(p.grad.values() if p.grad.is_sparse else p.grad) for p in params
    ]
    total = torch.linalg.vector_norm(torch.stack(norms))
    # the same coefficient as torch.nn.utils.clip_grad_norm_
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in params:
        p.grad = p.grad * coef if p.grad.is_sparse else p.grad.mul_(coef)


def make_optimizer(model: Recommender, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimiser, with the fused (single-kernel) update where torch has one.

    The model's :meth:`~Recommender.auxiliary_parameters` are left out: only
    :func:`auxiliary_step` moves them.
    """
    outer = {id(p) for p in model.auxiliary_parameters()}
    params: list[Any] = [p for p in model.parameters() if p.requires_grad and id(p) not in outer]
    groups = model.parameter_groups()
    if groups is not None:
        params = _checked_groups(model, groups, params)
    if cfg.optimizer == "sparse_adam":
        if any(isinstance(g, dict) and g.get("weight_decay") for g in params):
            raise ConfigError(
                "train.optimizer=sparse_adam does not support weight decay, which "
                f"{type(model).__name__}.parameter_groups() sets"
            )
        if not model.supports_sparse_grad:
            raise ConfigError(
                f"train.optimizer=sparse_adam: model {model.name!r} has no row-sparse gradients; "
                "use adam"
            )
        if cfg.weight_decay:
            raise ConfigError("train.optimizer=sparse_adam does not support train.weight_decay")
        model.sparse_grad = True
        return LazyAdam(params, lr=cfg.learning_rate)
    model.sparse_grad = False
    kinds = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
        "adagrad": torch.optim.Adagrad,
    }
    kind = kinds[cfg.optimizer]
    options = {"lr": cfg.learning_rate, "weight_decay": cfg.weight_decay}
    try:
        # the same update rule in one kernel per step; much cheaper for the small steps of
        # embedding models on CPU
        return kind(params, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):
        return kind(params, **options)


_GROUP_OPTIONS = frozenset({"params", "lr", "weight_decay"})


def _checked_groups(
    model: Recommender, groups: list[dict[str, Any]], trainable: list[nn.Parameter]
) -> list[dict[str, Any]]:
    """``model.parameter_groups()`` as optimiser groups: every trainable parameter in exactly
    one group, only the options the contract names, with valid values."""
    where = f"{type(model).__name__}.parameter_groups()"
    wanted = {id(p) for p in trainable}
    seen: set[int] = set()
    out = []
    for k, group in enumerate(groups):
        unknown = sorted(set(group) - _GROUP_OPTIONS)
        if unknown:
            raise ConfigError(
                f"{where}: group {k} has options {unknown}; allowed: lr, weight_decay"
            )
        members = group.get("params")
        if not isinstance(members, (list, tuple)) or not all(
            isinstance(p, nn.Parameter) for p in members
        ):
            raise ConfigError(f"{where}: group {k} needs 'params', a list of parameters")
        for key in ("lr", "weight_decay"):
            value = group.get(key)
            if value is not None and not (
                isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
            ):
                raise ConfigError(f"{where}: group {k} has {key}={value!r}")
        kept = [p for p in members if id(p) in wanted]
        ids = [id(p) for p in kept]
        if len(set(ids)) < len(ids) or seen.intersection(ids):
            raise ConfigError(
                f"{where}: a parameter is twice in group {k} or also in an earlier one"
            )
        seen.update(ids)
        options = {key: v for key, v in group.items() if key != "params" and v is not None}
        out.append({"params": kept, **options})
    missing = [n for n, p in model.named_parameters() if id(p) in wanted and id(p) not in seen]
    if missing:
        raise ConfigError(f"{where}: parameters in no group: {', '.join(missing[:5])}")
    return [g for g in out if g["params"]]


def auxiliary_step(
    model: Recommender, optimizer: torch.optim.Optimizer, batch: dict[str, Tensor]
) -> dict[str, float]:
    r"""One outer step of bi-level training on a validation batch (DARTS-style, first order).

    .. math::
        \alpha \leftarrow \mathrm{step}\big(\alpha,\ \nabla_\alpha
        \textstyle\sum \texttt{auxiliary\_loss}(\text{batch})\big)

    Gradients are taken with respect to the auxiliary parameters only
    (``torch.autograd.grad``), so the model's weights get no gradient and are not moved.
    Returns the detached terms, prefixed ``aux_``.
    """
    params = model.auxiliary_parameters()
    optimizer.zero_grad(set_to_none=True)
    terms = model.auxiliary_loss(batch)
    total = sum(terms.values())
    if not torch.isfinite(total):
        raise TrainingDivergedError(
            f"auxiliary loss became {total.item()}; lower the model's auxiliary learning rate"
        )
    grads = torch.autograd.grad(total, params, allow_unused=True)
    for param, grad in zip(params, grads, strict=True):
        param.grad = torch.zeros_like(param) if grad is None else grad
    optimizer.step()
    out = {f"aux_{k}": float(v.detach()) for k, v in terms.items()}
    out["aux_loss"] = float(total.detach())
    return out


@dataclass
class _Auxiliary:
    """The outer level of bi-level training: optimiser, validation sampler and its RNG."""

    optimizer: torch.optim.Optimizer
    sampler: Sampler
    rng: np.random.Generator


class Trainer:
    """Train ``model`` on ``split.train``, select on ``split.valid``, evaluate on ``split.test``.

    Args:
        model: a :class:`Recommender` (set up or not; :meth:`fit` sets it up on ``split.train``).
        split: the data split.
        config: :class:`TrainConfig`.
        evaluator: the full-ranking :class:`Evaluator` (its metrics must include the
            validation metric).
        checkpoint_dir: where ``best.pt`` and ``last.pt`` go; None keeps the best weights in
            memory only.
        callbacks: functions called with an :class:`EpochReport` after every epoch.
        dataset: passed to ``model.setup`` for models that read features.
        on_setup: called with the model once :meth:`fit` has set it up, before any training
            (a run records the model's :meth:`~Recommender.input_fingerprint` there).
    """

    def __init__(
        self,
        model: Recommender,
        split: Split,
        config: TrainConfig | None = None,
        evaluator: Evaluator | None = None,
        checkpoint_dir: Path | None = None,
        callbacks: list[Callback] | None = None,
        dataset: object | None = None,
        on_setup: Callable[[Recommender], None] | None = None,
    ) -> None:
        self.model = model
        self.on_setup = on_setup
        self.split = split
        self.config = config or TrainConfig()
        self.evaluator = evaluator or Evaluator()
        # the selection metric must be one this evaluator computes, checked before training
        self.evaluator.validate_metric_name(self.config.valid_metric)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.callbacks = list(callbacks or [])
        self.dataset = dataset
        self.device = resolve_device(self.config.device)
        if split.foldin is not None and not model.fold_in:
            raise cannot_fold_in(model.name)
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        self.item_popularity = np.bincount(split.train.indices, minlength=split.shape[1])
        self._best_state: dict[str, Tensor] | None = None

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, part: Literal["valid", "test"] = "valid") -> dict[str, float]:
        """Full-ranking metrics on ``part``; test masks training and validation items (only
        training items when the evaluator's ``mask_valid_at_test`` is off)."""
        self.model.eval()
        # with held-out users (split.foldin) a user's history is train + fold-in rows: scored
        # from, and masked
        truth, exclude = self.split.evaluation_target(part, self.evaluator.mask_valid_at_test)
        with torch.no_grad():
            return self.evaluator.evaluate(
                self.model.scorer(self.split.scoring_history(self.model.fold_in)),
                truth,
                exclude=exclude,
                item_popularity=self.item_popularity,
            )

    def _validate(self, epoch: int) -> dict[str, float]:
        """Validation metrics during training; NaN scores mean the weights diverged even though
        the loss stayed finite (e.g. a huge learning rate overflowing the embeddings)."""
        try:
            return self.evaluate("valid")
        except NonFiniteScoresError as exc:
            raise TrainingDivergedError(
                f"epoch {epoch}: {exc}; lower train.learning_rate or check the data"
            ) from None

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        """Train to the epoch limit or early stop; leaves the model at its best epoch."""
        cfg = self.config
        seed_everything(cfg.seed)
        if not self.model.is_fitted():
            self.model.setup(self.split.train, self.dataset)
        if self.on_setup is not None:
            self.on_setup(self.model)
        self.model.to(self.device)
        if self.model.batch_kind == "none":
            return self._fit_closed_form()

        sampler = self._sampler()
        optimizer = make_optimizer(self.model, cfg)
        rng = np.random.default_rng(cfg.seed)
        aux = self._auxiliary()
        # a model's own check of these settings (DNIS: enough epochs for its schedule)
        self.model.check_train_config(cfg)
        start_epoch, best_epoch, best_value, bad = 0, -1, -math.inf, 0
        history: list[dict[str, float]] = []
        best_valid: dict[str, float] = {}
        if resume:
            state = self._load_last(optimizer, rng, aux)
            if state is not None:
                start_epoch = state["epoch"] + 1
                best_epoch, best_value = state["best_epoch"], state["best_value"]
                bad, history = state["bad_evals"], list(state["history"])
                best_valid = dict(state["best_valid"])
                log.info("resuming at epoch %d (best so far: epoch %d)", start_epoch, best_epoch)
        stopped_early = bad >= cfg.patience
        bar = tqdm(
            range(start_epoch, cfg.epochs),
            desc=f"train {self.model.name}",
            unit="epoch",
            disable=not cfg.progress,
            initial=start_epoch,
            total=cfg.epochs,
        )
        epoch = start_epoch - 1
        epochs_run = start_epoch
        for epoch in bar if not stopped_early else ():
            plan = self.model.begin_epoch(epoch)
            if plan.stop:
                break
            if plan.restart:
                optimizer.state.clear()
            # a plan may also restart selection alone, keeping the optimiser (DNIS's pruning)
            if plan.restart or plan.reselect:
                best_value, bad = -math.inf, 0
            tic = time.perf_counter()
            train_terms = self._train_epoch(
                sampler, optimizer, rng, aux if plan.auxiliary else None
            )
            train_terms.update(self._epoch_end(epoch))
            valid, is_best = None, False
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                valid = self._validate(epoch)
                value = valid[cfg.valid_metric]
                if value > best_value:
                    best_epoch, best_value, best_valid, bad, is_best = epoch, value, valid, 0, True
                    self._save_best(epoch, valid)
                elif plan.patience:
                    bad += 1
                stopped_early = bad >= cfg.patience
            seconds = time.perf_counter() - tic
            row = {"epoch": epoch, "seconds": seconds, **train_terms}
            if valid:
                row.update({f"valid_{k}": v for k, v in valid.items()})
            history.append(row)
            epochs_run = epoch + 1
            self._save_last(
                epoch, optimizer, rng, best_epoch, best_value, bad, history, best_valid, aux
            )
            bar.set_postfix(
                loss=f"{train_terms['loss']:.4f}",
                **({cfg.valid_metric: f"{valid[cfg.valid_metric]:.4f}"} if valid else {}),
                best=best_epoch,
            )
            report = EpochReport(
                epoch, train_terms, valid, seconds, is_best, best_epoch, best_value
            )
            for callback in self.callbacks:
                callback(report)
            if stopped_early:
                break
        bar.close()
        self._restore_best()
        return TrainResult(
            best_epoch=best_epoch,
            best_valid=best_valid,
            epochs_run=epochs_run,
            history=history,
            stopped_early=stopped_early,
        )

    def _fit_closed_form(self) -> TrainResult:
        tic = time.perf_counter()
        self.model.fit(self.split.train)
        valid = self.evaluate("valid")
        self._save_best(0, valid)
        report = EpochReport(
            0, {}, valid, time.perf_counter() - tic, True, 0, valid[self.config.valid_metric]
        )
        for callback in self.callbacks:
            callback(report)
        return TrainResult(
            0, valid, 1, [{"epoch": 0, **{f"valid_{k}": v for k, v in valid.items()}}]
        )

    def _epoch_end(self, epoch: int) -> dict[str, float]:
        """The model's :meth:`Recommender.on_epoch_end` diagnostics, as floats."""
        self.model.eval()
        with torch.no_grad():
            extra = self.model.on_epoch_end(epoch)
        return {k: float(v) for k, v in extra.items()}

    def _sampler(self) -> Sampler:
        options = {}
        if self.model.batch_kind in ("pairwise", "pointwise"):
            options["n_negatives"] = self.config.n_negatives
        return make_sampler(
            self.model.batch_kind, self.split.train, self.config.batch_size, **options
        )

    def _auxiliary(self) -> _Auxiliary | None:
        """The outer level's state, for models with auxiliary parameters (else None)."""
        params = self.model.auxiliary_parameters()
        if not params:
            return None
        if self.split.valid.nnz == 0:
            raise ConfigError(
                f"model {self.model.name!r} takes auxiliary steps on validation batches, but "
                "split.valid is empty; use a split with a validation part"
            )
        options = {}
        if self.model.batch_kind == "pairwise":
            options["n_negatives"] = self.config.n_negatives
            # negatives of a validation triplet avoid the user's training items too
            sampler: Sampler = HeldOutPairwiseSampler(
                self.split.valid, self.split.train, self.config.batch_size, **options
            )
        else:
            sampler = make_sampler(
                self.model.batch_kind, self.split.valid, self.config.batch_size, **options
            )
        # its own stream, so the training batches are the same with or without it
        rng = np.random.default_rng([self.config.seed, 1])
        return _Auxiliary(self.model.auxiliary_optimizer(params), sampler, rng)

    def _train_epoch(
        self,
        sampler: Sampler,
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        aux: _Auxiliary | None = None,
    ) -> dict[str, float]:
        self.model.train()
        sums: dict[str, float] = {}
        n = 0
        # validation batches restart each epoch (and cycle within it), so the state to resume
        # an epoch boundary is just the auxiliary RNG
        valid_batches = _cycle(aux.sampler, aux.rng) if aux is not None else None
        for batch in sampler.epoch(rng):
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            terms = train_step(self.model, optimizer, batch, self.config.clip_grad_norm)
            if aux is not None:
                valid_batch = {
                    k: v.to(self.device, non_blocking=True) for k, v in next(valid_batches).items()
                }
                terms.update(auxiliary_step(self.model, aux.optimizer, valid_batch))
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
        return {k: v / max(n, 1) for k, v in sums.items()}

    # -- checkpoints ------------------------------------------------------------------------
    def _model_state(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def _save_best(self, epoch: int, valid: dict[str, float]) -> None:
        # the deployable form (e.g. DNIS's pruned, mixed-dimension tables); last.pt keeps the
        # full training state
        self._best_state = {
            k: v.detach().cpu().clone() for k, v in self.model.export_state_dict().items()
        }
        if self.checkpoint_dir is None:
            return
        save_checkpoint(
            self.checkpoint_dir / "best.pt",
            {
                "model": self._best_state,
                "model_name": self.model.name,
                "model_config": self.model.config.model_dump(mode="json"),
                "epoch": epoch,
                "valid": valid,
            },
        )

    def _save_last(
        self,
        epoch: int,
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        best_epoch: int,
        best_value: float,
        bad: int,
        history: list[dict[str, float]],
        best_valid: dict[str, float],
        aux: _Auxiliary | None = None,
    ) -> None:
        if self.checkpoint_dir is None:
            return
        extra = {}
        if aux is not None:
            extra = {"aux_optimizer": aux.optimizer.state_dict(), "aux_rng": rng_state(aux.rng)}
        if self.device.type == "cuda":
            # dropout masks and noise drawn on the GPU come from the device's own generator
            extra["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        save_checkpoint(
            self.checkpoint_dir / "last.pt",
            {
                **extra,
                "model": self._model_state(),
                "optimizer": optimizer.state_dict(),
                "numpy_rng": rng_state(rng),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "best_epoch": best_epoch,
                "best_value": best_value,
                "bad_evals": bad,
                "history": history,
                "best_valid": best_valid,
            },
        )

    def _load_last(
        self,
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        aux: _Auxiliary | None = None,
    ) -> dict[str, object] | None:
        path = self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None
        if path is None or not path.is_file():
            log.warning("no checkpoint to resume from in %s; starting fresh", self.checkpoint_dir)
            return None
        state = load_checkpoint(path, map_location=self.device)
        load_weights(self.model, state, path)
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError) as exc:
            raise DataError(
                f"checkpoint {path} holds no optimiser state that fits this run: {exc}"
            ) from exc
        restore_rng(rng, state["numpy_rng"])
        if aux is not None and "aux_optimizer" in state:
            aux.optimizer.load_state_dict(state["aux_optimizer"])
            restore_rng(aux.rng, state["aux_rng"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        best = self.checkpoint_dir / "best.pt"
        if best.is_file():
            self._best_state = load_checkpoint(best)["model"]
        return state

    def _restore_best(self) -> None:
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)


def default_num_threads() -> int:
    """Torch threads for this machine: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _cycle(sampler: Sampler, rng: np.random.Generator) -> Iterator[dict[str, Tensor]]:
    """Batches of ``sampler``, epoch after epoch (fresh order and negatives each pass)."""
    while True:
        yield from sampler.epoch(rng)
