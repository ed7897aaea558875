"""A one-step student distilled from a trained DiffRec teacher.

The student is a model of its own (registered as ``diffrec_student``): it has the teacher's
denoiser architecture, scores a user with **one** network call on the history row, and its
checkpoint holds only its own weights. The teacher is named in the config (``model.teacher``: a
``diffrec`` run folder or a ``best.pt`` checkpoint); it is frozen, held outside the module tree
(never in ``state_dict``), and read only

- at :meth:`~DiffRecStudent.setup`: its *config* (to build the same architecture), from the run
  folder's ``config.yaml`` or the checkpoint's ``model_config``;
- when training starts: its weights (targets, and the student's initial weights).

So a trained student reloads and scores from its own checkpoint plus the teacher's config; the
teacher's weights may be gone by then.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import scipy.sparse as sp
import torch
import yaml
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError, DataError
from recsys.models.base import ModelConfig, Recommender, ScoreFn
from recsys.train.checkpoint import load_checkpoint
from recsys_diffusion.diffusion import Denoiser, GaussianDiffusion
from recsys_diffusion.models import DiffRec, DiffRecConfig, history_rows

log = logging.getLogger(__name__)

Method = Literal["direct", "free", "regression", "boot", "consistency"]


class DiffRecStudentConfig(ModelConfig):
    """Hyper-parameters of :class:`DiffRecStudent`."""

    teacher: str | None = None
    """A trained ``diffrec`` teacher: its run folder (``config.yaml``, ``split.npz``,
    ``checkpoints/best.pt``) or a checkpoint file. Required by every method but ``direct``."""
    method: Method = "direct"
    """``free``: no training, one teacher call at :math:`t = T`; ``regression``: regress the
    teacher's :math:`T`-step output; ``boot``: BOOT-style bootstrapping between consecutive
    steps; ``consistency``: consistency distillation with an EMA target; ``direct``: no teacher,
    a one-step denoiser trained on the data (the no-distillation ablation, and the default so the
    model can be built standalone)."""
    init_from_teacher: bool = True
    """Start from the teacher's denoiser weights (otherwise from a fresh initialisation)."""
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    """Input dropout while training the student; None: the teacher's rate for ``direct``
    (whose target is the input itself), 0 for the distillation methods."""
    ema_decay: float = Field(0.95, ge=0.0, lt=1.0)
    """``consistency``: decay :math:`\\mu` of the EMA target network."""
    distance: Literal["l2", "huber"] = "l2"
    """``consistency``: the distance :math:`d` between student and target outputs (the notes'
    proposal, c.4, specifies Huber with :math:`\\delta = 10^{-3}`; the default is the squared
    error)."""
    huber_delta: float = Field(1e-3, gt=0.0)
    """``consistency`` with ``distance=huber``: the Huber threshold."""

    @field_validator("teacher")
    @classmethod
    def _teacher_absolute(cls, value: str | None) -> str | None:
        # the run config records it: a relative path would break evaluating or resuming the
        # student from another working directory
        return None if value is None else str(Path(value).expanduser().absolute())

    @model_validator(mode="after")
    def _teacher_matches_method(self) -> DiffRecStudentConfig:
        if self.method == "direct" and self.teacher is not None:
            raise ValueError(
                "method=direct trains without a teacher; drop model.teacher or choose "
                "free, regression, boot or consistency"
            )
        if self.method != "direct" and self.teacher is None:
            raise ValueError(
                f"method={self.method} distils a teacher: set model.teacher to a diffrec run "
                "folder or checkpoint"
            )
        if self.method == "free" and not self.init_from_teacher:
            raise ValueError("method=free is the teacher's own weights; init_from_teacher=false")
        return self


def _teacher_checkpoint(teacher: str, path: Path) -> dict[str, Any]:
    """:func:`load_checkpoint`, with its error naming ``model.teacher``."""
    try:
        return load_checkpoint(path)
    except DataError as exc:
        raise ConfigError(f"model.teacher={teacher!r}: {exc}") from None


def _run_folder_of(checkpoint: Path) -> Path | None:
    """The run folder holding ``checkpoint`` (``<run>/checkpoints/<name>.pt``), if it is one."""
    run = checkpoint.parent.parent
    if checkpoint.parent.name == "checkpoints" and (run / "config.yaml").is_file():
        return run
    return None


def read_teacher_config(teacher: str) -> tuple[dict[str, Any], Path, Path | None]:
    """``(diffrec config values, checkpoint path, run folder or None)`` of ``model.teacher``.

    Reads only ``config.yaml`` for a run folder; a checkpoint file is read whole. A checkpoint
    inside a run folder (``<run>/checkpoints/best.pt``) also returns that folder, so its split
    is checked against the student's like a run folder's.
    """
    path = Path(teacher).expanduser()
    if path.is_dir():
        cfg_path = path / "config.yaml"
        if not cfg_path.is_file():
            raise ConfigError(
                f"model.teacher={teacher!r}: {cfg_path} is missing (not a run folder)"
            )
        try:
            loaded = yaml.safe_load(cfg_path.read_text())
        except yaml.YAMLError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(
                f"model.teacher={teacher!r}: {cfg_path} is not valid YAML: {first}"
            ) from None
        section = loaded.get("model") if isinstance(loaded, dict) else None
        if not isinstance(section, dict):
            raise ConfigError(
                f"model.teacher={teacher!r}: {cfg_path} has no 'model' section (not a run "
                "folder's config)"
            )
        model = dict(section)
        name, run_dir, ckpt = model.pop("name", None), path, path / "checkpoints" / "best.pt"
    elif path.is_file():
        state = _teacher_checkpoint(teacher, path)
        name, run_dir, ckpt = state.get("model_name"), _run_folder_of(path), path
        model = dict(state.get("model_config") or {})
    else:
        raise ConfigError(f"model.teacher={teacher!r} does not exist")
    if name != DiffRec.name:
        raise ConfigError(
            f"model.teacher={teacher!r} is a {name!r} model; the student distils a 'diffrec' "
            "teacher (the item-space model; ldiffrec is not supported)"
        )
    return model, ckpt, run_dir


class DiffRecStudent(Recommender):
    r"""A one-step scorer distilled from a DiffRec teacher (see the package README).

    The teacher maps a history :math:`\mathbf{x}_0` to :math:`T` deterministic reverse steps,
    states :math:`\mathbf{s}_T = \mathbf{x}_0`,
    :math:`\mathbf{s}_{k-1} = \boldsymbol\mu_\phi(\mathbf{s}_k, k) = c_1(k)\,
    \hat{\mathbf{x}}_\phi(\mathbf{s}_k, k) + c_2(k)\,\mathbf{s}_k`, score
    :math:`\mathbf{s}_0`. The student :math:`F_\psi` has the teacher's architecture and is
    called once. Methods (``model.method``):

    - ``free``: :math:`F_\psi = \hat{\mathbf{x}}_\phi`, score
      :math:`\hat{\mathbf{x}}_\phi(\mathbf{x}_0, T)` (no training; the baseline every
      distillation must beat).
    - ``regression``:
      :math:`\mathcal{L} = \lVert F_\psi(\mathbf{x}_0, T) - \mathrm{sg}[\mathbf{s}_0]\rVert^2`.
    - ``boot`` (after BOOT, Gu et al. 2023): the student predicts every state from the start,
      :math:`g_\psi(\mathbf{x}_0, k) = a_k\mathbf{x}_0 + (1 - a_k)F_\psi(\mathbf{x}_0, k)` with
      :math:`a_k = \prod_{j \ge k} c_2(j)` (so :math:`g(\cdot, T) = \mathbf{x}_0` exactly and
      :math:`g(\cdot, 0) = F_\psi(\cdot, 0)`), and bootstraps one teacher step at a time,
      :math:`k \sim \mathcal{U}\{1..T\}`:

      .. math::
          \mathcal{L} = \left\lVert \frac{g_\psi(\mathbf{x}_0, k-1) - \mathrm{sg}\big[
          \boldsymbol\mu_\phi(g_\psi(\mathbf{x}_0, k), k)\big]}{1 - a_{k-1}} \right\rVert^2

      (the residual measured on :math:`F`'s scale). No real trajectory is ever run.
    - ``consistency`` (after LCD): :math:`f_\psi(\mathbf{s}, k) = F_\psi(\mathbf{s}, k)` for
      :math:`k \ge 1` and :math:`f(\mathbf{s}, 0) = \mathbf{s}`; on teacher trajectory states,

      .. math::
          \mathcal{L} = d\big(f_\psi(\mathbf{s}_k, k),\ \mathrm{sg}[f_{\psi^-}(\mathbf{s}_{k-1},
          k-1)]\big), \qquad \psi^- \leftarrow \mu\psi^- + (1-\mu)\psi

      with the EMA target :math:`\psi^-` updated before every training batch (its weights and
      update count are buffers, so a resumed run continues exactly). The teacher always takes
      one step (:math:`k \to k-1`; the notes ask for a skip of 5 at :math:`T = 40`).
    - ``direct``: no teacher; :math:`F_\psi(\mathrm{drop}(\mathbf{x}_0), T)` regresses
      :math:`\mathbf{x}_0` (a one-step DiffRec, to show what distillation adds).

    One-step score: :math:`F_\psi(\mathbf{x}_0, T)`, or :math:`g_\psi(\mathbf{x}_0, 0)` for
    ``boot``. Step arguments of :math:`F` are code indices, one below the paper's.

    Shapes:
        - loss: batch ``rows`` :math:`[B, |\mathcal{I}|]`
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "diffrec_student"
    config_class = DiffRecStudentConfig
    batch_kind = "user_rows"
    fold_in = True

    def __init__(self, config: DiffRecStudentConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if self.config.method == "free":
            # nothing to train: the trainer "fits" it in closed form (copies the teacher)
            self.batch_kind = "none"

    # -- structure ------------------------------------------------------------------------
    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        c = self.config
        self._teacher_ckpt: Path | None = None
        self._teacher_run: Path | None = None
        if c.teacher is None:
            arch = DiffRecConfig()
        else:
            values, self._teacher_ckpt, self._teacher_run = read_teacher_config(c.teacher)
            try:
                arch = DiffRecConfig(**values)
            except ValueError as exc:
                raise ConfigError(
                    f"model.teacher={c.teacher!r}: bad teacher config: {exc}"
                ) from None
        self.arch = arch
        dropout = (
            c.dropout if c.dropout is not None else (arch.dropout if c.teacher is None else 0.0)
        )
        self.diffusion = GaussianDiffusion(
            arch.steps, arch.noise_scale, arch.noise_min, arch.noise_max, arch.fix_beta1
        )
        self.net = Denoiser(self.n_items, list(arch.hidden_dims), arch.emb_size, dropout)
        if c.method == "consistency":
            self.target_net = Denoiser(self.n_items, list(arch.hidden_dims), arch.emb_size, 0.0)
            self.target_net.requires_grad_(False)
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        # 1 once the teacher's weights were copied in; saved, so a reload never copies again
        self.register_buffer("initialised", torch.zeros((), dtype=torch.long))
        object.__setattr__(self, "_teacher", None)

    def reset_parameters(self) -> None:
        self.net.reset_parameters()
        self.initialised.zero_()
        if self.config.method == "consistency":
            self.target_net.load_state_dict(self.net.state_dict())
            self.ema_updates.zero_()

    @property
    def device(self) -> torch.device:
        return self.net.time_proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (float32, or float64 after ``model.double()``)."""
        return self.net.time_proj.weight.dtype

    @property
    def steps(self) -> int:
        return self.arch.steps

    # -- the teacher ----------------------------------------------------------------------
    def teacher(self) -> DiffRec:
        """The frozen teacher, loaded on first use (not a submodule: never saved)."""
        self.check_fitted()
        if self._teacher is None:
            # building initialises weights (then overwritten); without a forked RNG that draw
            # would shift every later random number, and a resumed run (which loads the teacher
            # at a later batch) would diverge from an uninterrupted one
            with torch.random.fork_rng(devices=[]):
                model = DiffRec(self.arch).setup(self.train_matrix)
            self._check_teacher_split()
            if not self._teacher_ckpt.is_file():
                raise ConfigError(
                    f"model.teacher={self.config.teacher!r}: {self._teacher_ckpt} does not exist "
                    "(the teacher run saved no best checkpoint; train it first)"
                )
            state = _teacher_checkpoint(self.config.teacher, self._teacher_ckpt)
            try:
                model.load_state_dict(state["model"])
            except (RuntimeError, KeyError) as exc:
                raise ConfigError(
                    f"model.teacher={self.config.teacher!r}: its weights do not fit this data "
                    f"({self.n_users} users x {self.n_items} items): {exc}"
                ) from None
            model.requires_grad_(False)
            model.eval()
            object.__setattr__(self, "_teacher", model)
        self._teacher.to(device=self.device, dtype=self.dtype)
        return self._teacher

    def _check_teacher_split(self) -> None:
        """A teacher trained on other training rows would leak validation or test items.

        A run folder (or a checkpoint inside one) must hold the ``split.npz`` every recsys run
        writes; without it the leak cannot be ruled out, so the teacher is refused. Only a
        checkpoint file outside any run folder is taken on trust (logged).
        """
        teacher = self.config.teacher
        if self._teacher_run is None:
            log.warning(
                "model.teacher=%r is a checkpoint outside a run folder: its training split "
                "cannot be compared with this run's",
                teacher,
            )
            return
        split_path = self._teacher_run / "split.npz"
        if not split_path.is_file():
            raise ConfigError(
                f"model.teacher={teacher!r}: {split_path} is missing, so the teacher's training "
                "split cannot be checked against this run's (it would leak held-out items if "
                "they differ); use a complete teacher run folder"
            )
        from recsys.data.split import Split

        try:
            theirs = Split.load(split_path).train
        except DataError as exc:
            raise ConfigError(f"model.teacher={teacher!r}: {split_path}: {exc}") from None
        ours = sp.csr_array(self.train_matrix)
        if theirs.shape != ours.shape or (theirs != ours.astype(theirs.dtype)).nnz:
            raise ConfigError(
                f"model.teacher={self.config.teacher!r} was trained on a different training "
                "split than this run (use the same data and split settings, e.g. split.seed)"
            )

    def _initialise_from_teacher(self) -> None:
        if int(self.initialised) or not self.config.init_from_teacher:
            return
        with torch.no_grad():
            self.net.load_state_dict(self.teacher().denoiser.state_dict())
            if self.config.method == "consistency":
                self.target_net.load_state_dict(self.net.state_dict())
        self.initialised.fill_(1)

    def fit(self, train: sp.csr_array) -> None:
        """``method=free``: take the teacher's weights (no training)."""
        self.check_fit_input(train)
        self._initialise_from_teacher()

    # -- training -------------------------------------------------------------------------
    def _steps(self, k: int | Tensor, n: int) -> Tensor:
        if isinstance(k, Tensor):
            return k
        return torch.full((n,), k, dtype=torch.long, device=self.device)

    def _boot_state(self, x0: Tensor, k: Tensor, net_out: Tensor | None = None) -> Tensor:
        """:math:`g_\\psi(\\mathbf{x}_0, k)` for state indices ``k`` ``[B]``."""
        a = self.diffusion.x0_weight_from(k).unsqueeze(1)
        if net_out is None:
            net_out = self.net(x0, k.clamp_max(self.steps - 1))
        return a * x0 + (1 - a) * net_out

    def _teacher_step(self, teacher: DiffRec, s: Tensor, k: Tensor) -> Tensor:
        """:math:`\\boldsymbol\\mu_\\phi(\\mathbf{s}, k)` for state indices ``k >= 1``."""
        t = k - 1
        return self.diffusion.posterior_mean(s, teacher.denoiser(s, t, drop=False), t)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        method = self.config.method
        x0 = batch["rows"].to(self.dtype)
        n, T = len(x0), self.steps
        if method == "direct":
            out = self.net(x0, self._steps(T - 1, n))
            return {"reconstruction": (out - x0).pow(2).mean()}
        if method == "free":
            raise ConfigError("method=free has nothing to train (its trainer fits it directly)")
        if self.training:
            self._initialise_from_teacher()
        teacher = self.teacher()
        if method == "regression":
            with torch.no_grad():
                target = teacher.reverse(x0)
            out = self.net(x0, self._steps(T - 1, n))
            return {"regression": (out - target).pow(2).mean()}
        k = torch.randint(1, T + 1, (n,), device=x0.device)
        if method == "boot":
            with torch.no_grad():
                target = self._teacher_step(teacher, self._boot_state(x0, k), k)
            pred = self._boot_state(x0, k - 1)
            scale = (1 - self.diffusion.x0_weight_from(k - 1)).clamp_min(1e-6).unsqueeze(1)
            return {"boot": ((pred - target) / scale).pow(2).mean()}
        # consistency: teacher trajectory states s_k and s_{k-1}, the EMA target at k-1
        if self.training:
            self._ema_update()
        with torch.no_grad():
            s = x0
            for j in range(T, int(k.min()), -1):  # move rows with k < j one step down
                step = self._teacher_step(teacher, s, self._steps(j, n))
                s = torch.where((k < j).unsqueeze(1), step, s)
            s_prev = self._teacher_step(teacher, s, k)
            target_out = self.target_net(s_prev, (k - 2).clamp_min(0), drop=False)
            target = torch.where((k == 1).unsqueeze(1), s_prev, target_out)
        pred = self.net(s, k - 1)
        if self.config.distance == "huber":
            d = nn.functional.huber_loss(pred, target, delta=self.config.huber_delta)
        else:
            d = (pred - target).pow(2).mean()
        return {"consistency": d}

    @torch.no_grad()
    def _ema_update(self) -> None:
        mu = self.config.ema_decay
        for target, online in zip(self.target_net.parameters(), self.net.parameters(), strict=True):
            target.mul_(mu).add_(online.detach(), alpha=1 - mu)
        self.ema_updates += 1

    # -- inference ------------------------------------------------------------------------
    def one_step(self, x0: Tensor, input_weight_t: Tensor | None = None) -> Tensor:
        """The student's scores for history rows ``x0`` (dense or sparse CSR): one network
        call, no dropout."""
        n = x0.shape[0]
        if self.config.method == "boot":
            k = self._steps(0, n)
            out = self.net(x0, k, drop=False, input_weight_t=input_weight_t)
            a = float(self.diffusion.x0_weight_from(k[:1]))
            # a_0 = 0 whenever the last reverse step returns x0_hat (always, see x0_weight_from)
            return out if a == 0.0 else a * x0.to_dense() + (1 - a) * out
        return self.net(
            x0, self._steps(self.steps - 1, n), drop=False, input_weight_t=input_weight_t
        )

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        history = self.history_matrix(history)
        weight_t = self.net.input_weight_t()

        @torch.no_grad()
        def score(users: Tensor) -> Tensor:
            rows = history_rows(history, users, self.device, sparse=True).to(self.dtype)
            return self.one_step(rows, weight_t)

        return score

    def representations(self, history: sp.csr_array | None = None) -> dict[str, Tensor]:
        return {"item_output": self.net.layers[-1].weight.detach()}
