"""The :class:`Recommender` contract every model follows, built-in or plugin.

A model is a ``torch.nn.Module`` with

- ``name`` (its registry key; a plugin's entry-point name must equal it) and
  ``config_class``: a subclass of :class:`ModelConfig` (not a plain pydantic ``BaseModel``:
  ``ModelConfig`` rejects unknown keys and infinite or NaN values, and validates defaults)
  whose every field has a valid default, so that ``create_model(name)`` works and the CLI and
  the tuner can list and set its hyper-parameters;
- ``batch_kind``: which sampler feeds :meth:`loss` (``"pairwise"``, ``"pairs"``,
  ``"user_rows"``, ``"pointwise"``, or ``"none"`` for closed-form models that only
  :meth:`fit`); see *Batches*;
- :meth:`setup`: builds parameters for the data's shape, then :meth:`reset_parameters`, which
  re-initialises every learned parameter (a reset after training gives what a fresh set-up
  under the same torch seed gives);
- :meth:`loss` returning named scalar terms (the trainer sums them and logs each);
- :meth:`score` for full ranking, and :meth:`scorer`, which returns a function of user indices
  with any shared work (graph propagation, item-tower passes) done once, explicitly;
- :meth:`export_state_dict`: the deployable weights (``best.pt``), which
  :meth:`load_state_dict` must accept on a freshly set-up model of the same config;
- :meth:`representations`: named internal states for probes;
- :meth:`input_fingerprint`: digests of what :meth:`setup` derived from the data outside the
  checkpoint (by default its non-persistent buffers), which a run records and checks on load.

Training and scoring modes: the trainer calls ``model.train()`` before training batches and
``model.eval()`` before scoring (validation, test, recommendations, loaded runs), so
:meth:`score` and :meth:`scorer` are used in eval mode, and must be deterministic there
(dropout and other training-time noise off). The model does not switch its own mode to
score or train: whoever calls it does (the trainer, :func:`recsys.experiment.load_run`, the
conformance checks).

Batches. The trainer draws batches from the sampler of ``batch_kind``
(:mod:`recsys.data.samplers`), moves them to the model's device and calls :meth:`loss` in
training mode. ``B`` is at most ``train.batch_size`` (the last batch of an epoch is smaller):

- ``"pairwise"``: ``{"user": int64 [B], "pos": int64 [B], "neg": int64 [B]}``, one training
  interaction ``(user, pos)`` per row with a negative drawn uniformly from the items the user
  has no training interaction with. With ``train.n_negatives = n > 1``, ``neg`` is
  ``int64 [B, n]`` (``n`` negatives per positive); a model that cannot use several negatives
  refuses ``n > 1`` in :meth:`check_train_config`.
- ``"pairs"``: ``{"user": int64 [B], "item": int64 [B]}``, shuffled training interactions
  (for in-batch negatives).
- ``"user_rows"``: ``{"user": int64 [B], "rows": float32 [B, n_items]}``, users with at least
  one training item and their training rows as a dense 0/1 block.
- ``"pointwise"``: ``{"user": int64 [B], "item": int64 [B], "label": float32 [B]}``, labelled
  examples for a pointwise loss (BCE): every training interaction (label 1) and
  ``train.n_negatives`` negatives per positive (label 0, uniform over the user's non-training
  items, redrawn each epoch), shuffled together; ``B`` counts positives and negatives.
- ``"none"``: no batches; the trainer calls :meth:`fit` once with the training matrix.

Construction only stores the config (scikit-learn's rule), so ``type(m)(m.config)`` gives a
fresh, unfitted copy with the same hyper-parameters.

:mod:`recsys.testing` checks a model class against this contract (``MODEL_CHECKS``); the
registry refuses a plugin whose ``config_class``, defaults, ``batch_kind`` or ``name`` break it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor, nn

from recsys.data.dataset import Dataset
from recsys.data.samplers import BatchKind
from recsys.errors import ConfigError, DataError, NotFittedError

ScoreFn = Callable[[Tensor], Tensor]


def history_rows(
    history: sp.csr_array,
    users: Tensor | np.ndarray,
    device: torch.device | str = "cpu",
    sparse: bool = False,
) -> Tensor:
    """Float32 rows ``[B, n_items]`` of ``history`` for ``users`` on ``device``, for models
    that score from a user's history (fold-in): dense, or a sparse CSR tensor when
    ``sparse``."""
    if isinstance(users, Tensor):
        users = users.detach().cpu().numpy()
    rows = sp.csr_array(history[users], dtype=np.float32)
    if not sparse:
        return torch.from_numpy(rows.toarray()).to(device)
    return torch.sparse_csr_tensor(
        torch.from_numpy(rows.indptr.astype(np.int64)),
        torch.from_numpy(rows.indices.astype(np.int64)),
        torch.from_numpy(rows.data),
        rows.shape,
    ).to(device)


def user_indices(users: Tensor | np.ndarray | list[int], n_users: int) -> Tensor:
    """``users`` as a 1-D int64 tensor (on its own device), or an error naming the bad
    index: the integer indices of a model set up with ``n_users`` users."""
    if not isinstance(users, Tensor):
        users = torch.as_tensor(np.asarray(users))
    if users.numel() == 0:  # torch.tensor([]) is float: still no users
        return users.reshape(0).long()
    if users.dim() != 1:
        raise ValueError(
            f"users must be a 1-D tensor of user indices, got shape {tuple(users.shape)}"
        )
    if users.dtype == torch.bool or users.is_floating_point() or users.is_complex():
        raise TypeError(f"users must be integer user indices, got dtype {users.dtype}")
    low, high = int(users.min()), int(users.max())
    if low < 0 or high >= n_users:
        bad = low if low < 0 else high
        raise IndexError(
            f"user index {bad} is out of range: the model has {n_users} users "
            f"(indices 0 to {n_users - 1})"
        )
    return users.long()


def _float_sketch(x: Tensor) -> list[float]:
    r"""A few position-weighted sums of a float buffer, in float64: :math:`\sum_k |x_k|`, then
    for fixed weights :math:`w_j(k) \in [-1/2, 1/2)` the sum :math:`s_j = \sum_k w_j(k)\,x_k`
    and its scale :math:`q_j = (\sum_k (w_j(k)\,x_k)^2)^{1/2}`. Floats that differ only in
    their last bits (text re-encoded on another machine) move :math:`s_j` by about
    :math:`10^{-7} q_j`; an edited, replaced or reordered row moves it by a sizeable share of
    that row's own :math:`\lVert w x\rVert`, which :func:`same_input` compares with
    :math:`10^{-3} q_j`."""
    values = x.double().reshape(-1)
    k = torch.arange(values.numel(), dtype=torch.int64)
    sums = [float(values.abs().sum())]
    for prime in (7919, 104729, 1299709):
        weighted = values * ((k * prime % 1009).double() / 1009 - 0.5)
        sums += [float(weighted.sum()), float(torch.linalg.vector_norm(weighted))]
    return sums


def same_input(recorded: str | None, now: str | None, rtol: float = 1e-3) -> bool:
    r"""Whether two :meth:`Recommender.input_fingerprint` values describe the same input:
    equal digests, or for float buffers sketches (:func:`_float_sketch`) whose weighted sums
    agree within ``rtol`` of their scales :math:`q_j` and whose :math:`\sum_k |x_k|` agree
    within 1e-6 relative (floats that differ only in their last bits)."""
    if recorded == now:
        return True
    if recorded is None or now is None or " ~ " not in recorded or " ~ " not in now:
        return False
    then = [float(v) for v in recorded.split(" ~ ")[1].split()]
    current = [float(v) for v in now.split(" ~ ")[1].split()]
    if len(then) != len(current) or len(then) % 2 == 0:
        return False
    if abs(then[0] - current[0]) > 1e-6 * max(then[0], 1e-30):
        return False
    pairs = zip(then[1::2], then[2::2], current[1::2], strict=True)
    return all(abs(s - s_now) <= rtol * max(q, 1e-30) for s, q, s_now in pairs)


class ModelConfig(BaseModel):
    """Base of every model's hyper-parameter class: typed, validated, unknown keys rejected."""

    # an infinite or NaN hyper-parameter passes range checks (NaN fails every comparison, and
    # ``ge=0`` admits inf) and then trains silently wrong or dies mid-run; defaults are
    # validated too, so a default that breaks its own field's constraint is caught (the
    # registry refuses such a model, see :func:`config_defaults_problem`)
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, validate_default=True
    )


ConfigT = TypeVar("ConfigT", bound=ModelConfig)


def build_config(
    config_class: type[ConfigT], values: dict[str, Any], prefix: str = "model"
) -> ConfigT:
    """Validate ``values`` into ``config_class``; errors name the key (``model.embedding_size``).

    A failure in fields that ``values`` does not set, which the defaults alone also give, is
    the model's bug, and the message says so (:func:`config_defaults_problem`) rather than
    blaming the user's settings."""
    from recsys.config import refuse_booleans_as_numbers, validation_message

    refuse_booleans_as_numbers(config_class, values, prefix)
    try:
        return config_class(**values)
    except ValidationError as exc:
        if all(err["loc"] and str(err["loc"][0]) not in values for err in exc.errors()):
            problem = config_defaults_problem(config_class)
            if problem:
                raise ConfigError(f"{prefix}: {problem}") from None
        raise ConfigError(validation_message(exc, config_class, prefix)) from None


def config_defaults_problem(config_class: type[BaseModel]) -> str | None:
    """Why ``config_class()`` (every hyper-parameter at its default) fails, or None.

    A model's config must construct from its defaults alone (``create_model(name)``,
    ``recsys models --params`` and the tuner rely on it): a field without a default, or a
    default that breaks the field's own constraint, is a bug in the model's code, not in
    anyone's settings, and the message says so, naming each field.
    """
    try:
        config_class()
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            field = ".".join(str(x) for x in err["loc"])
            if err["type"] == "missing":
                parts.append(f"{field} has no default")
            elif field:
                parts.append(f"the default {field}={err['input']!r} is invalid: {err['msg']}")
            else:  # a model-level validator: no one field to blame
                parts.append(f"the defaults are invalid together: {err['msg']}")
        reason = "; ".join(parts)
    except Exception as exc:  # a validator raising something else
        reason = f"constructing it raises {type(exc).__name__}: {exc}"
    else:
        return None
    return (
        f"its config {config_class.__name__} cannot be built from its defaults ({reason}); "
        "every hyper-parameter needs a valid default (a bug in the model's code, not in the "
        "user's settings)"
    )


@dataclass(frozen=True)
class EpochPlan:
    """What one training epoch does, as a model asks in :meth:`Recommender.begin_epoch`."""

    stop: bool = False
    """End training before this epoch: the model's schedule is complete."""
    auxiliary: bool = False
    """After every training batch, take one auxiliary step on a validation batch."""
    patience: bool = True
    """Whether a validation without improvement counts towards early stopping."""
    restart: bool = False
    """The model has re-initialised its weights before this epoch: clear the optimiser's state
    (moments of the old weights would steer the new) and restart best-epoch selection and
    early stopping (epochs before it trained another model)."""
    reselect: bool = False
    """Restart best-epoch selection and early stopping before this epoch, keeping the
    optimiser's state: the weights go on training, but the epochs before were another
    architecture (DNIS's first fine-tuning epoch, under the widths pruning just fixed)."""


class Recommender(nn.Module):
    """Base class of all models. See the module docstring for the contract."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    """The hyper-parameters: a :class:`ModelConfig` subclass whose fields all have valid
    defaults (the registry refuses a plugin whose config is not)."""
    batch_kind: ClassVar[BatchKind] = "pairwise"
    """The sampler feeding :meth:`loss`; one of ``typing.get_args(BatchKind)`` (the batch dicts
    are in the module docstring)."""
    supports_sparse_grad: ClassVar[bool] = False
    """Whether :meth:`loss` can produce row-sparse embedding gradients (``sparse_grad``)."""
    fold_in: ClassVar[bool] = False
    unfingerprinted_buffers: ClassVar[frozenset[str]] = frozenset()
    """Non-persistent buffers :meth:`input_fingerprint` leaves out: training aids computed
    from fingerprinted inputs through clustering or thresholds (a last-bit difference on
    other hardware may flip them) that scoring never reads."""
    """Whether :meth:`scorer` scores a user from the ``history`` rows alone (no per-user
    parameters), so users unseen in training can be scored (the ``heldout_users`` split)."""

    def __init__(self, config: ModelConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is not None and kwargs:
            raise TypeError(f"{type(self).__name__}: pass a config object or keywords, not both")
        if config is None:
            config = build_config(self.config_class, kwargs)
        elif not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} expects {self.config_class.__name__}")
        self.config = config
        self.n_users: int | None = None
        self.n_items: int | None = None
        self.train_matrix: sp.csr_array | None = None
        # set by the trainer for a sparse optimiser: embedding lookups then give row-sparse
        # gradients, so a step costs O(rows in the batch), not O(table size)
        self.sparse_grad = False

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({fields})"

    # -- life cycle -------------------------------------------------------------------------
    def setup(self, train: sp.csr_array, dataset: Dataset | None = None) -> Recommender:
        """Build parameters and buffers for ``train``'s shape, then reset them. Returns self."""
        self.n_users, self.n_items = (int(x) for x in train.shape)
        # the default history for fold-in scoring; data, not a learned state
        self.train_matrix = train
        self.build(train, dataset)
        self.reset_parameters()
        return self

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        """Create parameters and buffers (subclasses)."""

    def reset_parameters(self) -> None:
        """Re-initialise learned weights (subclasses)."""

    def fit(self, train: sp.csr_array) -> None:
        """Closed-form fitting (``batch_kind == "none"``); iterative models train by loss."""

    def is_fitted(self) -> bool:
        return self.n_users is not None

    def check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{type(self).__name__} is not set up; call setup() first")

    def input_fingerprint(self) -> dict[str, str]:
        """Fingerprints of what :meth:`setup` derived from the data and is not in the model's
        checkpoint: name -> sha256 (of dtype, shape and bytes) of each non-persistent buffer,
        such as the item feature tables, token codes and the training graph, followed for a
        float buffer by a few weighted sums (``" ~ "``-separated), so that :func:`same_input`
        accepts floats that differ only in their last bits (text re-encoded elsewhere).

        Called right after :meth:`setup`: a run records it in ``run.json``
        (``model_inputs``), and loading or resuming the run refuses data from which the
        model would now get other inputs (a renamed token shifts the codes, an edited or
        re-encoded feature other rows), since its weights were trained on the recorded ones.
        The inputs must be deterministic given the data and the training matrix (no random
        draws). Override it when the inputs live elsewhere (return their digests by name). A
        buffer named in its module's :attr:`unfingerprinted_buffers` is left out, also when
        the module is wrapped (DNIS around a two-tower). Empty when there is none.
        """
        out = {}
        for prefix, module in self.named_modules():
            skip = getattr(module, "unfingerprinted_buffers", frozenset())
            for name, buffer in module._buffers.items():
                if buffer is None or name not in module._non_persistent_buffers_set:
                    continue
                if name in skip:
                    continue
                x = buffer.detach()
                if x.layout != torch.strided:
                    x = x.to_dense()
                x = x.cpu().contiguous().reshape(-1)
                digest = hashlib.sha256(f"{x.dtype}{tuple(buffer.shape)}".encode())
                digest.update(x.view(torch.uint8).numpy().tobytes())
                text = digest.hexdigest()
                if x.is_floating_point():
                    text += " ~ " + " ".join(f"{v:.9e}" for v in _float_sketch(x))
                out[f"{prefix}.{name}" if prefix else name] = text
        return out

    def check_fit_input(self, train: sp.csr_array) -> None:
        """For :meth:`fit`: the model is set up, and ``train`` has the shape it was set up
        for (a matrix of another shape would fill the buffers past, or short of, their
        rows)."""
        self.check_fitted()
        if tuple(train.shape) != (self.n_users, self.n_items):
            raise DataError(
                f"{type(self).__name__}.fit: the training matrix is {train.shape[0]} x "
                f"{train.shape[1]}, but the model was set up for {self.n_users} users x "
                f"{self.n_items} items"
            )

    # -- training ---------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named loss terms for one batch of the declared ``batch_kind``."""
        raise NotImplementedError(f"{type(self).__name__} has no loss (batch kind 'none')")

    def example_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        r"""Per-positive main loss :math:`[B]` and the scalar regularisation terms.

        For one batch of the declared ``batch_kind`` (optional; wrappers that reweight or drop
        examples, such as the denoising plugin, need it). Entry :math:`b` is the main loss of
        the batch's :math:`b`-th positive interaction (for pairwise models, its triplet
        averaged over its negatives), such that

        .. math::
            \frac{1}{B}\sum_b \ell_b + \sum_k R_k = \sum_{\text{terms}} \texttt{loss(batch)}
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not provide per-example losses (example_losses), "
            "so it cannot be wrapped by a loss-reweighting model"
        )

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Called by the trainer after each training epoch, in eval mode without gradients.

        A model may update non-learned state here (keep it in buffers, so checkpoints carry it)
        and returns named per-epoch diagnostics; they join the epoch's training terms in the
        history and are logged to MLflow as ``train/<name>``. Default: nothing.
        """
        return {}

    def write_artifacts(self, run_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """Write reports into a finished run's folder; returns the files (logged as artifacts).

        ``history`` is the run's per-epoch rows. Default: nothing.
        """
        return []

    # -- embedding contract and bi-level training (used by DNIS) ---------------------------
    def id_embeddings(self) -> dict[str, str]:
        """Role -> attribute name of each ID-embedding table (an ``nn.Embedding``).

        Roles are ``"user"`` (one row per user), ``"item"`` (one row per item) and ``"node"``
        (users then items in one table, as in graph models). The model must read each table
        only through that module (its ``forward`` or its ``.weight``), so a wrapper such as
        DNIS can replace the module by one that behaves like ``nn.Embedding``. Default: none.
        """
        return {}

    def begin_epoch(self, epoch: int) -> EpochPlan:
        """Called by the trainer before each epoch (0-based); says what the epoch does.

        A model with a schedule (warm start, search, fine-tuning) switches phase here; keep
        phase state in buffers or derive it from ``epoch`` so a resumed run is exact.
        Default: a plain training epoch.
        """
        return EpochPlan()

    def check_train_config(self, train: Any) -> None:
        """Refuse training settings this model cannot work with (a :class:`ConfigError`
        naming the keys), before any training: called by the trainer's ``fit`` and by
        commands that can check earlier (``recsys dnis``, ``recsys tune`` before Ray starts).
        ``train`` is the :class:`~recsys.train.trainer.TrainConfig`. Default: no check.
        """

    def schedule_epochs(self) -> int:
        """The fewest training epochs before this model's saved form exists (DNIS: warm start,
        search and one fine-tuning epoch); a tuning scheduler must not judge or stop a trial
        earlier. Default: 1."""
        return 1

    def parameter_groups(self) -> list[dict[str, Any]] | None:
        """Parameter groups of the main optimiser with options of their own, for models whose
        parts train at different rates (L-DiffRec's autoencoder and latent denoiser).

        Each group is ``{"params": [...], "lr": ..., "weight_decay": ...}`` with the options
        optional (absent ones are the trainer's ``train.learning_rate`` and
        ``train.weight_decay``); the groups must hold every trainable parameter once, apart from
        :meth:`auxiliary_parameters`. Default: None, one group.
        """
        return None

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        """Parameters of the outer level of bi-level training (e.g. DNIS's alpha).

        The trainer keeps them out of the main optimiser and updates them only through
        :meth:`auxiliary_loss` on validation batches, with :meth:`auxiliary_optimizer`.
        Default: none.
        """
        return []

    def auxiliary_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """The optimiser of :meth:`auxiliary_parameters` (its state is checkpointed)."""
        raise NotImplementedError(f"{type(self).__name__} has no auxiliary parameters")

    def auxiliary_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named loss terms of the outer level for one validation batch (same batch kind)."""
        raise NotImplementedError(f"{type(self).__name__} has no auxiliary loss")

    def export_state_dict(self) -> dict[str, Tensor]:
        """The state written as the deployable model (``best.pt``); :meth:`load_state_dict`
        must accept it on a freshly set-up model. Default: :meth:`state_dict`."""
        return self.state_dict()

    # -- scoring ----------------------------------------------------------------------------
    def score(self, users: Tensor, history: sp.csr_array | None = None) -> Tensor:
        """Scores of all items for ``users``: ``[len(users), n_items]``, in eval mode (the
        caller switches the mode; see the module docstring).

        ``history`` (optional) is a CSR matrix whose rows are the users' known items, for
        models that score from a history (fold-in); by default the training rows are used.
        ``users`` are checked: an index outside the users would otherwise read another user's
        row (a negative one, through numpy's indexing), a row past the end (the same scores
        for every user, in models that ignore the user), or crash a CUDA kernel.
        """
        self.check_fitted()
        n = history.shape[0] if history is not None and self.fold_in else self.n_users
        return self.scorer(history)(user_indices(users, n))

    def history_matrix(self, history: sp.csr_array | None) -> sp.csr_array:
        """The rows a fold-in model scores users from: ``history`` as CSR, checked to have one
        column per item, or the training matrix when None.

        Raises:
            DataError: ``history`` has another number of items.
        """
        if history is None:
            return self.train_matrix
        rows = sp.csr_array(history)
        if rows.shape[1] != self.n_items:
            raise DataError(f"history has {rows.shape[1]} items; the model has {self.n_items}")
        return rows

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        """A function ``users -> scores`` with shared work done once, for evaluation (in
        eval mode, like :meth:`score`)."""
        raise NotImplementedError

    def representations(self, history: sp.csr_array | None = None) -> dict[str, Tensor]:
        """Named internal states (e.g. ``user``, ``item`` embeddings) for probes.

        Each tensor has one row per user or per item (the name says which); the ones that the
        scores are computed from are the sites :meth:`scorer_from` accepts. ``history`` is for
        models that fold in (:attr:`fold_in`): the rows to compute user states from, as in
        :meth:`scorer` (default the training matrix); a held-out user's training row is empty.
        Other models are never passed one.
        """
        return {}

    def scorer_from(self, representations: dict[str, Tensor]) -> ScoreFn:
        """A score function computed from (possibly edited) representations.

        Probes replace one site (say ``user``) with a sparse autoencoder's reconstruction and
        re-score through this. Models whose scores are not a function of named representations
        raise :class:`NotImplementedError`.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot score from representations")


class DotProductScorer:
    r"""Mixin for models that score :math:`\hat{y}_{ui} = \mathbf{u}_u^\top \mathbf{v}_i` from
    their ``user`` and ``item`` representations."""

    def scorer_from(self, representations: dict[str, Tensor]) -> ScoreFn:
        users_r, items_r = representations["user"], representations["item"]

        def score(users: Tensor) -> Tensor:
            return users_r.index_select(0, users.to(users_r.device)) @ items_r.T

        return score

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")
