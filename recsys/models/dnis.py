r"""DNIS: differentiable search of per-feature embedding dimensions, around any ID-embedding model.

From `"Differentiable Neural Input Search for Recommender Systems"
<https://arxiv.org/abs/2006.04466>`_ (Cheng, Shen, Huang, 2020). The base model (BPR-MF,
LightGCN, the two-tower model, ...) declares its ID-embedding tables through
:meth:`~recsys.models.base.Recommender.id_embeddings`; DNIS replaces each by a
:class:`SelectedEmbedding`:

- the rows of a table are ranked by descending training frequency (interactions of the user,
  the item, or the graph node) and cut into :math:`S` contiguous blocks (equal shares of rows by
  default), so every row :math:`f` has a block :math:`b(f)`;
- a soft selection matrix :math:`\alpha \in [0, 1]^{S \times K}` (one per table, initialised
  to 1) scales each embedding by its block's row:

  .. math::
      \tilde{\mathbf{e}}_f = \boldsymbol{\alpha}_{b(f)} \odot \mathbf{e}_f

- training is bi-level (first-order DARTS): after a warm start of the weights :math:`w` with
  :math:`\alpha` fixed, every training batch updates :math:`w` (``alpha`` untouched) and is
  followed by a validation batch that updates :math:`\alpha` only:

  .. math::
      g = \nabla_\alpha\big[\mathcal{L}_{\mathrm{val}}(w, \alpha)
          + \lambda_1 \lVert\alpha\rVert_1\big], \qquad
      g_{s,:} \leftarrow \frac{g_{s,:}}{\frac{1}{K}\sum_k |g_{s,k}| + \epsilon}, \qquad
      \alpha \leftarrow \mathrm{clamp}(\alpha - \eta_\alpha g,\ 0,\ 1)

  (the per-block normalisation puts rare and frequent blocks, whose raw gradients differ by
  orders of magnitude, on one scale);
- the final dimensions come from pruning the smallest :math:`|\alpha \odot E|` at the
  granularity of :math:`\alpha`'s cells: a cell :math:`(s, k)` scores
  :math:`\frac{1}{n_s}\sum_{b(f)=s} |\alpha_{s,k} e_{f,k}|` (divided by the table's mean
  :math:`|e|`, so tables of different scale compare), and cells are kept best first
  until the kept parameters :math:`\sum_s n_s d_s` reach ``keep_ratio`` (or ``param_budget``)
  of the tables' :math:`\sum_f K`;
- optionally the pruned model is fine-tuned with its mask fixed, from the searched weights or
  (``finetune_from="scratch"``) from a fresh initialisation at the chosen widths.

Variants for dot-product models and for studying the search space: ``structure="nested"``
makes every block keep a prefix of one column ranking shared by all tables (a user and an item
then interact on all the columns the narrower keeps; with free pruning they meet only where
both kept the same columns); ``block_dims`` or ``mde_exponent`` (MDE's popularity rule, the
paper's baseline) fix the widths instead of searching them.

Evaluation always scores the model *as it would be deployed*: before pruning, the current
:math:`\alpha \odot E` pruned to the target budget; after, the fixed mask. So every validation,
and the trainer's best-epoch selection, is at the target parameter count. Which epochs may be
selected follows the method: with fine-tuning (AutoSrh's retraining of the pruned model), the
result is the pruned, fine-tuned model, so selection and early stopping restart at pruning and
the saved widths are the ones pruning fixed (``best_epoch_from="any"`` also admits the earlier
epochs, each pruned from its own state); without fine-tuning, the result is the best epoch of
warm start and search, pruned when saved (the reference keeps the best-validation checkpoint of
its search and prunes it). ``train.epochs`` must cover warm start, search and (with
fine-tuning) one fine-tuning epoch, or training would end before pruning; this is checked
before training. The deployable state
(:meth:`DNIS.export_state_dict`, written to ``best.pt``) stores each table as per-block tables
of their own width (:class:`MixedDimEmbedding`, :math:`\alpha` folded in, zero-padded to
:math:`K` at use), so a checkpoint's parameter count and size drop for real; loading it into a
freshly set-up DNIS model switches that model to the compact form, which scores identically.

The validation batches for :math:`\alpha` come from ``split.valid`` (as in the paper);
``split.test`` is never touched by the search.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError
from recsys.models.base import EpochPlan, ModelConfig, Recommender, ScoreFn, build_config
from recsys.models.registry import get_model_class, register

if TYPE_CHECKING:
    from recsys.train.trainer import TrainConfig

log = logging.getLogger(__name__)

ROLES = ("user", "item", "node")
"""Roles of ID-embedding tables whose row frequencies DNIS knows."""


# --------------------------------------------------------------------------- blocks


def row_frequencies(train: sp.csr_array, role: str) -> np.ndarray:
    """Training interactions per row of a table of ``role``.

    ``user``: per user; ``item``: per item; ``node``: users then items (graph degree).
    """
    n_items = train.shape[1]
    users = np.diff(sp.csr_array(train).indptr).astype(np.int64)
    items = np.bincount(sp.csr_array(train).indices, minlength=n_items).astype(np.int64)
    if role == "user":
        return users
    if role == "item":
        return items
    if role == "node":
        return np.concatenate([users, items])
    raise ConfigError(
        f"DNIS does not know the row frequencies of an ID-embedding role {role!r} "
        f"(known roles: {', '.join(ROLES)})"
    )


def block_fractions(n_blocks: int, fractions: list[float] | None) -> np.ndarray:
    """Share of rows in each block: ``fractions`` as given, else ``n_blocks`` equal shares."""
    if fractions is None:
        return np.full(n_blocks, 1.0 / n_blocks)
    return np.asarray(fractions, dtype=np.float64)


def frequency_blocks(freq: np.ndarray, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank rows by descending frequency and cut the ranking into blocks.

    Args:
        freq: interactions per row ``[n]``.
        fractions: share of rows per block ``[S]`` (summing to 1), most frequent block first.

    Returns:
        ``order`` ``[n]`` (row ids, most frequent first; ties keep the lower id first) and
        ``block`` ``[n]`` (the block of each row id, ``0`` the most frequent).
    """
    n = len(freq)
    order = np.argsort(-np.asarray(freq), kind="stable")
    bounds = np.rint(np.cumsum(fractions) * n).astype(np.int64)
    bounds[-1] = n  # rounding never loses the last rows
    position_block = np.searchsorted(bounds, np.arange(n), side="right")
    block = np.empty(n, dtype=np.int64)
    block[order] = position_block
    return order, block


# --------------------------------------------------------------------------- the alpha step


def normalize_block_grad(grad: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Per-block gradient normalisation :math:`g_{s,:} / (\mathrm{mean}_k |g_{s,k}| + \epsilon)`.

    Shapes:
        - grad: :math:`[S, K]` -> :math:`[S, K]`
    """
    return grad / (grad.abs().mean(dim=-1, keepdim=True) + eps)


class AlphaOptimizer(torch.optim.Optimizer):
    r"""The update of DNIS's selection matrices: per-block normalised gradient, an SGD or Adam
    step, then a clamp to ``[low, high]``.

    .. math::
        g_{s,:} \leftarrow \frac{g_{s,:}}{\mathrm{mean}_k |g_{s,k}| + \epsilon}, \qquad
        \alpha \leftarrow \mathrm{clamp}\big(\alpha - \eta\,u(g),\ \mathrm{low},\
        \mathrm{high}\big)

    with :math:`u(g) = g` (``sgd``) or Adam's bias-corrected moment ratio (``adam``).

    Args:
        params: the selection matrices (each ``[S, K]``).
        lr: :math:`\eta`.
        rule: ``"sgd"`` or ``"adam"``. (default: ``"sgd"``)
        normalize: apply the per-block normalisation. (default: ``True``)
        low, high: clamp bounds. (default: ``0``, ``1``)
        betas, eps: Adam's. (default: ``(0.9, 0.999)``, ``1e-8``)
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        rule: Literal["sgd", "adam"] = "sgd",
        normalize: bool = True,
        low: float = 0.0,
        high: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        defaults = {
            "lr": lr,
            "rule": rule,
            "normalize": normalize,
            "low": low,
            "high": high,
            "betas": betas,
            "eps": eps,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["normalize"]:
                    g = normalize_block_grad(g)
                if group["rule"] == "adam":
                    state = self.state[p]
                    if not state:
                        state["step"] = torch.zeros((), dtype=torch.float64)
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    state["step"] += 1
                    b1, b2 = group["betas"]
                    state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                    state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                    t = float(state["step"])
                    m_hat = state["exp_avg"] / (1 - b1**t)
                    v_hat = state["exp_avg_sq"] / (1 - b2**t)
                    g = m_hat / (v_hat.sqrt() + group["eps"])
                p.sub_(g, alpha=group["lr"]).clamp_(group["low"], group["high"])


# --------------------------------------------------------------------------- the tables


class SelectedEmbedding(nn.Module):
    r"""An ``nn.Embedding`` whose rows are scaled by their block's row of a selection matrix.

    .. math::
        \tilde{E}_f = E_f \odot \alpha_{b(f)} \odot m_{b(f)}

    with :math:`m \in \{0,1\}^{S \times K}` the pruning mask (all ones until DNIS prunes).
    ``weight`` is the whole scaled table and ``forward(idx)`` its rows, so a model that reads
    its table either way sees the scaled one. ``alpha`` reaches the autograd graph only while
    ``alpha_grad`` is set (DNIS's validation steps); training batches see it as a constant.

    Args:
        embedding: the base model's table ``[n, K]`` (kept as the child ``embedding``).
        row_block: block of each row ``[n]``.
        n_blocks: :math:`S`.
        init_alpha: initial value of every :math:`\alpha_{s,k}`. (default: ``1.0``)
    """

    def __init__(
        self, embedding: nn.Embedding, row_block: Tensor, n_blocks: int, init_alpha: float = 1.0
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.n_blocks = int(n_blocks)
        device = embedding.weight.device
        dim = embedding.weight.shape[1]
        self.register_buffer("row_block", row_block.to(device), persistent=False)
        self.alpha = nn.Parameter(
            torch.full((self.n_blocks, dim), float(init_alpha), device=device)
        )
        self.register_buffer("mask", torch.ones(self.n_blocks, dim, device=device))
        self.alpha_grad = False
        # the evaluation-time mask (the target-budget pruning of the current state); set by
        # DNIS for scoring, cleared before training
        self.view_mask: Tensor | None = None

    @property
    def num_embeddings(self) -> int:
        return self.embedding.weight.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.embedding.weight.shape[1]

    def selection(self) -> Tensor:
        """:math:`\\alpha \\odot m` ``[S, K]`` (``alpha`` detached unless ``alpha_grad``)."""
        alpha = self.alpha if self.alpha_grad else self.alpha.detach()
        mask = self.mask if self.view_mask is None else self.view_mask
        return alpha * mask

    @property
    def weight(self) -> Tensor:
        """The scaled table :math:`\\tilde{E}` ``[n, K]``."""
        return self.embedding.weight * self.selection().index_select(0, self.row_block)

    def forward(self, index: Tensor) -> Tensor:
        rows = F.embedding(index, self.embedding.weight)
        return rows * self.selection().index_select(0, self.row_block[index].reshape(-1)).view(
            rows.shape
        )

    def block_sizes(self) -> Tensor:
        """Rows per block ``[S]``."""
        return torch.bincount(self.row_block, minlength=self.n_blocks)

    @torch.no_grad()
    def cell_scores(self, normalize: str = "table") -> Tensor:
        r"""Pruning score of every cell ``[S, K]``: the block's mean
        :math:`|\alpha_{s,k} e_{f,k}|`, divided by the mean :math:`|e|` of the whole table
        (``normalize="table"``) or of the block (``"block"``: blocks then compete by their
        :math:`\alpha`, and magnitude only ranks dimensions within a block)."""
        raw = self.embedding.weight.abs()
        sizes = self.block_sizes().clamp(min=1).unsqueeze(1).to(raw.dtype)
        mean = torch.zeros_like(self.alpha).index_add_(0, self.row_block, raw) / sizes
        if normalize == "block":
            scale = mean.mean(dim=1, keepdim=True).clamp(min=1e-12)
        else:
            scale = raw.mean().clamp(min=1e-12)
        # alpha is constant within a block: mean |alpha e| = alpha * mean |e|
        return self.alpha.detach() * mean / scale

    @torch.no_grad()
    def compact(self, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Per-block tables ``[n_s, d_s]`` of :math:`\\tilde{E}` under ``mask`` and their
        column indices ``[d_s]`` (rows of a block in ascending row-id order)."""
        full = self.embedding.weight * (self.alpha * mask).index_select(0, self.row_block)
        tables, cols = [], []
        for s in range(self.n_blocks):
            rows = torch.nonzero(self.row_block == s).flatten()
            keep = torch.nonzero(mask[s] > 0).flatten()
            tables.append(full.index_select(0, rows).index_select(1, keep).clone())
            cols.append(keep.clone())
        return tables, cols


class MixedDimEmbedding(nn.Module):
    r"""An embedding table stored as per-block tables of their own width, zero-padded to
    :math:`K` at use: row :math:`f` of block :math:`s` is
    :math:`\mathbf{e}_f[c_s] = T_s[\mathrm{pos}(f)]` and 0 elsewhere.

    Parameters are only the blocks' tables (``tables.<s>``, :math:`[n_s, d_s]`); the kept
    columns (``cols_<s>``, :math:`[d_s]`) are buffers. Which rows form a block comes from the
    training frequencies (``row_block``, recomputed at set-up, not stored).

    Args:
        row_block: block of each row ``[n]``.
        dim: :math:`K`.
        cols: kept columns of each block.
    """

    def __init__(self, row_block: Tensor, dim: int, cols: list[Tensor]) -> None:
        super().__init__()
        device = row_block.device
        self.dim = int(dim)
        self.n_blocks = len(cols)
        self.register_buffer("row_block", row_block, persistent=False)
        self.tables = nn.ParameterList()
        for s, c in enumerate(cols):
            rows = torch.nonzero(row_block == s).flatten()
            self.register_buffer(f"rows_{s}", rows, persistent=False)
            self.register_buffer(f"cols_{s}", c.to(device=device, dtype=torch.long))
            self.tables.append(nn.Parameter(torch.zeros(len(rows), len(c), device=device)))

    @property
    def num_embeddings(self) -> int:
        return self.row_block.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.dim

    def block_dims(self) -> list[int]:
        """:math:`d_s` of every block."""
        return [int(getattr(self, f"cols_{s}").numel()) for s in range(self.n_blocks)]

    @property
    def weight(self) -> Tensor:
        """The zero-padded table ``[n, K]``."""
        table = self.tables[0] if self.n_blocks else None
        dtype = table.dtype if table is not None else torch.float32
        out = torch.zeros(self.num_embeddings, self.dim, dtype=dtype, device=self.row_block.device)
        for s in range(self.n_blocks):
            t = self.tables[s]
            if t.numel():
                rows, cols = getattr(self, f"rows_{s}"), getattr(self, f"cols_{s}")
                out = out.index_put((rows.unsqueeze(1), cols.unsqueeze(0)), t)
        return out

    def forward(self, index: Tensor) -> Tensor:
        return F.embedding(index, self.weight)


# --------------------------------------------------------------------------- pruning


def select_cells(
    scores: list[Tensor],
    sizes: list[Tensor],
    budget: int,
    min_dim: int = 0,
    column_order: Tensor | None = None,
) -> list[Tensor]:
    r"""Keep the best-scoring cells of several selection matrices within a parameter budget.

    A cell :math:`(s, k)` of a table costs :math:`n_s` parameters (one dimension for every
    row of block :math:`s`). Each non-empty block first keeps its ``min_dim`` best cells; the
    remaining cells are taken best first, and the number taken is the one whose total cost is
    closest to ``budget`` (so the kept count misses the budget by at most half a cell).

    With ``column_order`` (a ranking of the :math:`K` columns shared by every table), the kept
    columns of every block are a prefix of that ranking: a cell's score is replaced by the
    lowest score of the cells before it in its block (:math:`\min_{r' \le r}`), so cells are
    taken in ranking order. Blocks then keep nested column sets, and a row of width
    :math:`d_u` meets a row of width :math:`d_i` on :math:`\min(d_u, d_i)` shared columns,
    which dot-product models need (a dimension only contributes where both sides keep it).

    Args:
        scores: ``[S_t, K_t]`` per table.
        sizes: rows per block ``[S_t]`` per table.
        budget: parameters to keep.
        min_dim: dimensions every non-empty block keeps.
        column_order: ``[K]`` column ids, most important first; every table has ``K`` columns.

    Returns:
        A float 0/1 mask ``[S_t, K_t]`` per table.
    """
    if column_order is not None:
        # rank space: column r of a table is its column_order[r]; prefix scores are cummin
        scores = [score[:, column_order].cummin(dim=1).values for score in scores]
    flat_scores, flat_costs, forced = [], [], []
    for score, size in zip(scores, sizes, strict=True):
        n_blocks, dim = score.shape
        cost = size.to(torch.float64).unsqueeze(1).expand(n_blocks, dim)
        top = torch.zeros(n_blocks, dim, dtype=torch.bool, device=score.device)
        if min_dim > 0 and column_order is not None:
            top[:, : min(min_dim, dim)] = True
        elif min_dim > 0:
            best = score.topk(min(min_dim, dim), dim=1).indices
            top.scatter_(1, best, True)
        top &= cost > 0
        flat_scores.append(score.flatten().double())
        flat_costs.append(cost.flatten())
        forced.append(top.flatten())
    score_all = torch.cat(flat_scores)
    cost_all = torch.cat(flat_costs)
    keep = torch.cat(forced)
    rest = float(budget) - float(cost_all[keep].sum())
    if rest < 0:
        raise ConfigError(
            f"DNIS: the parameter budget {budget} is below what min_dim needs "
            f"({int(cost_all[keep].sum())}); lower model.min_dim or raise the budget"
        )
    free = torch.nonzero(~keep & (cost_all > 0)).flatten()
    order = free[torch.argsort(-score_all[free], stable=True)]
    cum = torch.cat(
        [torch.zeros(1, dtype=torch.float64, device=cost_all.device), cost_all[order].cumsum(0)]
    )
    taken = int(torch.argmin((cum - rest).abs()))
    keep[order[:taken]] = True
    out, start = [], 0
    for score in scores:
        n = score.numel()
        mask = keep[start : start + n].view(score.shape).to(score.dtype)
        if column_order is not None:  # back from rank space to column ids
            mask = torch.zeros_like(mask).index_copy_(1, column_order, mask)
        out.append(mask)
        start += n
    return out


def mde_dims(
    interactions: np.ndarray, sizes: np.ndarray, budget: float, dim: int, exponent: float
) -> list[int]:
    r"""Block widths by the popularity rule of mixed-dimension embeddings (MDE, Ginart et al.,
    the DNIS paper's baseline): block :math:`s` gets a share of the parameters proportional
    to :math:`p_s^a`, its share of the interactions to the power :math:`a`:

    .. math::
        d_s = \mathrm{clip}\Big(\frac{B\,p_s^a}{n_s \sum_{s'} p_{s'}^a},\ 1,\ K\Big)

    (budget freed by blocks clipped at :math:`K` goes to the others; widths are rounded).
    :math:`a = 0` gives every block the same parameters (uniform widths for equal blocks),
    :math:`a = 1` parameters in proportion to interactions, :math:`a < 0` more to rare blocks.

    Args:
        interactions: interactions per block ``[S]``.
        sizes: rows per block ``[S]``.
        budget: :math:`B`, parameters of the table.
        dim: :math:`K`.
        exponent: :math:`a`.
    """
    interactions = np.asarray(interactions, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    # a block without training interactions counts half of one (a < 0 would divide by 0)
    shares = np.maximum(interactions, 0.5) / max(interactions.sum(), 1.0)
    weight = np.where(sizes > 0, shares**exponent, 0.0)
    widths = np.zeros(len(sizes))
    capped = np.zeros(len(sizes), dtype=bool)
    for _ in range(len(sizes)):  # each round caps at least one block, or ends
        rest = budget - float((sizes * widths)[capped].sum())
        free = ~capped & (sizes > 0)
        if not free.any():
            break
        share = weight[free] / max(weight[free].sum(), 1e-300)
        widths[free] = rest * share / sizes[free]
        over = free & (widths >= dim)
        if not over.any():
            break
        widths[over], capped = dim, capped | over
    return [int(d) for d in np.clip(np.rint(widths), 1, dim) * (sizes > 0)]


# --------------------------------------------------------------------------- the model


class DNISConfig(ModelConfig):
    """Hyper-parameters of :class:`DNIS`."""

    base: str = "bpr"
    """The wrapped model (any registered model with ID embeddings and a loss)."""
    base_params: dict[str, Any] = Field(default_factory=dict)
    """The base model's hyper-parameters (validated against its config; defaults filled)."""
    n_blocks: int = Field(10, ge=1)
    """:math:`S`, frequency blocks per table (equal shares of rows)."""
    block_fractions: list[float] | None = None
    """Shares of rows per block, most frequent first (e.g. ``[0.1, 0.2, 0.2, 0.2, 0.3]``);
    overrides ``n_blocks``."""
    keep_ratio: float = Field(0.5, gt=0.0, le=1.0)
    """Share of the ID-embedding parameters kept by pruning."""
    param_budget: int | None = Field(None, gt=0)
    """ID-embedding parameters kept by pruning (overrides ``keep_ratio``)."""
    min_dim: int = Field(0, ge=0)
    """Dimensions every non-empty block keeps (0: a block may be pruned away entirely, as the
    method allows; its rows then have no embedding, and pruning logs a warning)."""
    block_dims: dict[str, list[int]] | None = None
    """Fixed widths per block and role (``{"user": [...], "item": [...]}``, most frequent
    block first) instead of a search: the mixed model trains from its initialisation, every
    block keeping its first :math:`d_s` columns. For baselines and studies of the search
    space."""
    mde_exponent: float | None = Field(None, allow_inf_nan=False)
    """Fixed widths from MDE's popularity rule (:func:`mde_dims`, exponent :math:`a`) at
    ``keep_ratio`` of every table, instead of a search (the paper's MDE baseline)."""
    structure: Literal["free", "nested"] = "free"
    """Which cells pruning may keep: any (``free``: any (block, dimension) cell, the closest
    to the paper's per-entry pruning that keeps one width per block; see
    ``benchmarks/dnis_entry_pruning.py`` for per-entry pruning itself), or in
    every block a prefix of one column ranking shared by all tables (``nested``), so that a
    user and an item interact on all the columns the narrower of them keeps."""
    score_normalization: Literal["table", "block"] = "table"
    """Pruning scores :math:`|\\alpha \\odot E|` of a cell are divided by the mean
    :math:`|E|` of its table (global magnitude pruning) or of its block (blocks compete by
    :math:`\\alpha`, magnitude ranks the dimensions inside a block)."""
    l1_weight: float = Field(1e-4, ge=0.0)
    """:math:`\\lambda_1`, L1 penalty on :math:`\\alpha` in the validation loss (the paper's
    code uses 1e-5 with MSE/BCE losses; with BPR on MovieLens-100k 1e-4 prunes better and
    1e-3 drives every :math:`\\alpha` towards 0)."""
    alpha_lr: float = Field(0.01, gt=0.0)
    """:math:`\\eta_\\alpha`, learning rate of the :math:`\\alpha` steps."""
    alpha_optimizer: Literal["sgd", "adam"] = "sgd"
    """Update rule of :math:`\\alpha` (the paper's code: SGD)."""
    alpha_grad_norm: bool = True
    """Per-block gradient normalisation of the :math:`\\alpha` steps."""
    init_alpha: float = Field(1.0, gt=0.0, le=1.0)
    """Initial :math:`\\alpha`."""
    warm_start_epochs: int = Field(20, ge=0)
    """Epochs training the weights with :math:`\\alpha` fixed, before the search."""
    search_epochs: int = Field(10, ge=0)
    """Epochs of alternating weight / :math:`\\alpha` steps (0: magnitude pruning only)."""
    fold_alpha: bool = True
    """At pruning, fold :math:`\\alpha` into the weights, so fine-tuning updates are not
    scaled down by small :math:`\\alpha` (Adam's steps are scale-free in the weight)."""
    finetune: bool = True
    """After pruning, train the pruned model (mask fixed) until early stopping; else stop."""
    finetune_from: Literal["searched", "scratch"] = "searched"
    """Where fine-tuning starts: the searched weights (``alpha`` folded in by ``fold_alpha``),
    or freshly initialised weights at the chosen dimensions (``alpha`` reset to 1, optimiser
    state cleared): the retraining of the derived architecture that NAS methods (DARTS,
    AutoSrh) use, which keeps only the search's *dimensions*."""
    search_dense: bool = True
    """Update the base's non-embedding weights during the search (the paper's released code
    freezes them; the equations suggest updating all)."""
    best_epoch_from: Literal["finetune", "any"] = "finetune"
    """With fine-tuning, which epochs may become the saved (best-validation) model: only the
    fine-tuning epochs (``finetune``: the result is the pruned, fine-tuned model, as when
    AutoSrh retrains the pruned architecture; selection and early stopping restart at
    pruning), or every epoch (``any``: a warm-start or search epoch, pruned to the budget
    from its own state when saved, wins if it validates better than every fine-tuning epoch;
    its widths can then differ from those pruning logged). Without fine-tuning
    (``finetune=false``) every epoch is a candidate; ``finetune_from="scratch"`` always
    selects among the retraining epochs."""

    def __init__(self, **values: Any) -> None:
        # resolved here rather than in a validator, so a bad base or base parameter is one
        # ConfigError naming its key, not a message wrapped by pydantic
        super().__init__(**_resolve_base(values))
        searched = not self.fixed_allocation()
        if searched and not self.finetune and self.warm_start_epochs + self.search_epochs == 0:
            # epoch 0 would already be the end of the schedule: nothing would train
            raise ConfigError(
                "model.finetune=false with model.warm_start_epochs=0 and model.search_epochs=0 "
                "trains nothing; give a warm start or search epochs, or fine-tune"
            )

    def fixed_allocation(self) -> bool:
        """Whether the widths are given (``block_dims`` or ``mde_exponent``), not searched."""
        return self.block_dims is not None or self.mde_exponent is not None

    @model_validator(mode="after")
    def _fractions_valid(self) -> DNISConfig:
        if self.block_dims is not None and self.mde_exponent is not None:
            raise ValueError("give block_dims or mde_exponent, not both")
        if self.block_fractions is not None:
            fr = self.block_fractions
            if not fr or any(f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
                raise ValueError(f"block_fractions must be positive shares summing to 1, got {fr}")
        return self


def _resolve_base(values: dict[str, Any]) -> dict[str, Any]:
    """Check ``base`` and fill ``base_params`` with the base model's validated defaults."""
    values = dict(values)
    fixed = [k for k in ("block_dims", "mde_exponent") if values.get(k) is not None]
    if values.get("param_budget") is not None and fixed:
        # fixed widths never read the budget: it would be ignored without a word
        raise ConfigError(
            f"model.param_budget={values['param_budget']} applies to a search, not to "
            f"model.{fixed[0]} (block_dims gives the widths; mde_exponent spends "
            "model.keep_ratio of every table)"
        )
    name = str(values.get("base", "bpr"))
    if name == DNIS.name:
        raise ConfigError("model.base: DNIS cannot wrap itself")
    base_cls = get_model_class(name, key="model.base")
    if base_cls.batch_kind == "none" or not base_cls().id_embeddings():
        raise ConfigError(
            f"model.base={name!r} has no trainable ID embeddings (id_embeddings()); DNIS "
            "applies to embedding models such as bpr, lightgcn and twotower"
        )
    params = values.get("base_params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"model.base_params must be a mapping, got {params!r}")
    base_cfg = build_config(base_cls.config_class, params, prefix="model.base_params")
    roles = base_cls(base_cfg).id_embeddings()
    unknown = sorted(set(roles) - set(ROLES))
    if not roles or unknown:
        raise ConfigError(
            f"model.base={name!r} declares ID-embedding roles {sorted(roles)}; DNIS needs at "
            f"least one, of {', '.join(ROLES)} (it knows their row frequencies)"
        )
    values["base"] = name
    values["base_params"] = base_cfg.model_dump(mode="json")
    return values


@register
class DNIS(Recommender):
    r"""DNIS: mixed embedding dimensions per frequency block, searched around an ID model.

    Differentiable neural input search: a soft selection matrix over (frequency block,
    dimension) is learned on validation batches, then the smallest cells are pruned.

    See the module docstring for the method. The schedule, in epochs (0-based):

    - ``[0, W)``: warm start (``warm_start_epochs``), :math:`\alpha` fixed;
    - ``[W, W + S)``: search (``search_epochs``), each training batch followed by an
      :math:`\alpha` step on a validation batch (:meth:`auxiliary_loss`, the trainer's
      bi-level hook);
    - epoch ``W + S``: prune to the budget; then fine-tune until early stopping
      (``finetune``), or stop.

    ``train.epochs`` must reach the pruning and, with fine-tuning, one fine-tuning epoch
    (:meth:`schedule_epochs`; :meth:`check_train_config` refuses fewer before training).
    Validation always scores the model as deployed (pruned to the budget). Early stopping
    only counts validations from the fine-tuning on. With fine-tuning, the saved model is the
    best fine-tuning epoch: best-epoch selection and early stopping restart at pruning
    (``best_epoch_from="finetune"``, the default), so the saved widths are the ones pruning
    fixed; ``best_epoch_from="any"`` lets a warm-start or search epoch, pruned when saved,
    win instead. Without fine-tuning, the saved model is the best epoch of warm start and
    search, pruned to the budget when saved (the reference's best-validation checkpoint).

    Shapes:
        - loss: the base model's batch
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "dnis"
    config_class = DNISConfig
    batch_kind = "pairwise"

    def __init__(self, config: DNISConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        # the trainer's sampler follows the wrapped model's batch kind
        base_cls = get_model_class(self.config.base)
        self.batch_kind = base_cls.batch_kind
        # read from an unbuilt base, so the fold-in check can run before setup
        self._base_folds_in = bool(
            base_cls(base_cls.config_class(**self.config.base_params)).fold_in
        )

    @property
    def fold_in(self) -> bool:  # type: ignore[override]
        """The base's: DNIS only resizes ID tables, so a base that scores users from their
        history rows alone (a two-tower with ``use_user_id=false``: no user table to search)
        still does, and DNIS around it trains under ``split.strategy=heldout_users``."""
        return self._base_folds_in

    def __repr__(self) -> str:
        cfg = self.config
        budget = (
            f"param_budget={cfg.param_budget}"
            if cfg.param_budget
            else f"keep_ratio={cfg.keep_ratio}"
        )
        return f"DNIS(base={cfg.base!r}, n_blocks={self._n_blocks()}, {budget})"

    def _n_blocks(self) -> int:
        cfg = self.config
        return len(cfg.block_fractions) if cfg.block_fractions else cfg.n_blocks

    # -- life cycle -------------------------------------------------------------------------
    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        base_cls = get_model_class(self.config.base)
        self.base = base_cls(base_cls.config_class(**self.config.base_params))
        self.base.setup(train, dataset)
        fractions = block_fractions(self._n_blocks(), self.config.block_fractions)
        self._roles = dict(self.base.id_embeddings())
        self.block_order: dict[str, np.ndarray] = {}
        self.block_freq: dict[str, np.ndarray] = {}
        for role, attr in self._roles.items():
            table = getattr(self.base, attr, None)
            if not isinstance(table, nn.Embedding):
                raise ConfigError(
                    f"model.base={self.config.base!r}: id_embeddings() names {attr!r} for role "
                    f"{role!r}, which is not an nn.Embedding"
                )
            freq = row_frequencies(train, role)
            if len(freq) != table.num_embeddings:
                raise ConfigError(
                    f"model.base={self.config.base!r}: table {attr!r} has "
                    f"{table.num_embeddings} rows but role {role!r} has {len(freq)}"
                )
            order, block = frequency_blocks(freq, fractions)
            self._check_blocks_filled(role, block, len(fractions))
            self.block_order[role], self.block_freq[role] = order, freq
            wrapper = SelectedEmbedding(
                table, torch.from_numpy(block), len(fractions), self.config.init_alpha
            )
            setattr(self.base, attr, wrapper)
        self.register_buffer("pruned", torch.tensor(False))
        widths = {role: getattr(self.base, a).embedding_dim for role, a in self._roles.items()}
        if self.config.structure == "nested" and len(set(widths.values())) > 1:
            raise ConfigError(
                f"model.structure=nested ranks columns across tables, which needs one width; "
                f"{self.config.base!r} has ID-embedding widths {widths}"
            )
        if self.config.block_dims is not None:
            self._check_block_dims(self.config.block_dims, len(fractions), widths)
        total = self.full_parameters()
        if self.config.param_budget is not None and self.config.param_budget > total:
            raise ConfigError(
                f"model.param_budget={self.config.param_budget} exceeds the "
                f"{total} ID-embedding parameters of {self.config.base!r}"
            )
        if self.config.block_dims is None:
            self._check_budget_covers_rows(total)

    def _check_blocks_filled(self, role: str, block: np.ndarray, n_blocks: int) -> None:
        """Every block of a table needs a row: an empty block has no frequency range, its
        cells cost nothing, and its width in the report means nothing."""
        sizes = np.bincount(block, minlength=n_blocks)
        if sizes.all():
            return
        n, cfg = len(block), self.config
        if cfg.block_fractions is not None:
            empty = int(np.flatnonzero(sizes == 0)[0])
            raise ConfigError(
                f"model.block_fractions={cfg.block_fractions}: block {empty} of the {role} "
                f"table of {cfg.base!r} ({n} rows) gets no rows; give every block a share of "
                f"at least 1/{n}"
            )
        raise ConfigError(
            f"model.n_blocks={n_blocks} exceeds the {n} rows of the {role} table of "
            f"{cfg.base!r}; every frequency block needs at least one row (use at most {n})"
        )

    def _check_budget_covers_rows(self, total: int) -> None:
        r"""The budget must pay for one dimension of every row, :math:`B \ge \sum_t n_t`:
        below that whole blocks are pruned to width 0 and their rows score as zero vectors
        (a budget under one block's cell keeps nothing at all)."""
        rows = sum(m.num_embeddings for m in self._tables().values())
        budget = self.budget()
        cfg = self.config
        # min_dim is otherwise only checked at pruning, after the warm start and the search
        forced = sum(
            min(cfg.min_dim, m.embedding_dim) * m.num_embeddings for m in self._tables().values()
        )
        if budget < forced and not self.config.fixed_allocation():
            raise ConfigError(
                f"model.min_dim={cfg.min_dim} needs {forced} parameters, more than the budget "
                f"of {budget}; lower model.min_dim or raise the budget"
            )
        if budget >= rows:
            return
        if cfg.param_budget is not None:
            what = f"model.param_budget={cfg.param_budget}"
        else:
            what = f"model.keep_ratio={cfg.keep_ratio:g} ({budget} parameters)"
        raise ConfigError(
            f"{what} is less than one dimension per row: the ID-embedding tables of "
            f"{cfg.base!r} have {rows} rows ({total} parameters at full width), so keep at "
            f"least {rows} parameters (keep_ratio >= {rows / total:.4g})"
        )

    def _check_block_dims(
        self, dims: dict[str, list[int]], n_blocks: int, widths: dict[str, int]
    ) -> None:
        if set(dims) != set(self._roles):
            raise ConfigError(
                f"model.block_dims names roles {sorted(dims)}; {self.config.base!r} has "
                f"{sorted(self._roles)}"
            )
        for role, values in dims.items():
            if len(values) != n_blocks or any(not 0 <= d <= widths[role] for d in values):
                raise ConfigError(
                    f"model.block_dims.{role}: need {n_blocks} widths between 0 and "
                    f"{widths[role]}, got {values}"
                )

    @torch.no_grad()
    def fixed_masks(self) -> dict[str, Tensor]:
        """Attribute -> mask ``[S, K]`` keeping the first :math:`d_s` columns of every block, for
        the given ``block_dims`` or MDE's widths."""
        cfg = self.config
        out = {}
        for role, attr in self._roles.items():
            wrapper = self._wrappers()[attr]
            if cfg.block_dims is not None:
                dims = cfg.block_dims[role]
            else:
                sizes = wrapper.block_sizes().cpu().numpy()
                block = wrapper.row_block.cpu().numpy()
                interactions = np.bincount(
                    block, weights=self.block_freq[role], minlength=wrapper.n_blocks
                )
                budget = cfg.keep_ratio * wrapper.num_embeddings * wrapper.embedding_dim
                dims = mde_dims(
                    interactions, sizes, budget, wrapper.embedding_dim, cfg.mde_exponent or 0.0
                )
            columns = torch.arange(wrapper.embedding_dim, device=wrapper.alpha.device)
            widths = torch.tensor(dims, device=wrapper.alpha.device).unsqueeze(1)
            out[attr] = (columns.unsqueeze(0) < widths).to(wrapper.alpha.dtype)
        return out

    def reset_parameters(self) -> None:
        if self.is_compact():
            raise RuntimeError("a compact (pruned, saved) DNIS model cannot be re-initialised")
        wrappers = self._wrappers()
        # the base initialises its own tables as it always does
        for attr, wrapper in wrappers.items():
            setattr(self.base, attr, wrapper.embedding)
        try:
            self.base.reset_parameters()
        finally:
            for attr, wrapper in wrappers.items():
                setattr(self.base, attr, wrapper)
        for wrapper in wrappers.values():
            with torch.no_grad():
                wrapper.alpha.fill_(self.config.init_alpha)
                wrapper.mask.fill_(1.0)
            wrapper.view_mask = None
        self.pruned.fill_(False)

    def _wrappers(self) -> dict[str, SelectedEmbedding]:
        return {attr: getattr(self.base, attr) for attr in self._roles.values()}

    def _tables(self) -> dict[str, nn.Module]:
        """Attribute -> the (selected or compact) module of every ID-embedding table."""
        return {attr: getattr(self.base, attr) for attr in self._roles.values()}

    def is_compact(self) -> bool:
        """Whether the tables are stored per block (a loaded, deployable model)."""
        return any(isinstance(m, MixedDimEmbedding) for m in self._tables().values())

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        return torch.device("cpu")

    # -- parameter accounting ---------------------------------------------------------------
    def full_parameters(self) -> int:
        """ID-embedding parameters at full width: :math:`\\sum_t n_t K_t`."""
        return sum(m.num_embeddings * m.embedding_dim for m in self._tables().values())

    def budget(self) -> int:
        """ID-embedding parameters to keep."""
        if self.config.param_budget is not None:
            return int(self.config.param_budget)
        return round(self.config.keep_ratio * self.full_parameters())

    def block_dims(self) -> dict[str, list[int]]:
        """Role -> chosen dimension of every block (deployed view)."""
        out = {}
        masks = self._deployed_masks()
        for role, attr in self._roles.items():
            table = getattr(self.base, attr)
            if isinstance(table, MixedDimEmbedding):
                out[role] = table.block_dims()
            else:
                out[role] = [int(x) for x in masks[attr].sum(1).tolist()]
        return out

    def kept_parameters(self) -> int:
        """ID-embedding parameters of the deployed model: :math:`\\sum_s n_s d_s`."""
        total = 0
        for role, dims in self.block_dims().items():
            sizes = torch.bincount(
                getattr(self.base, self._roles[role]).row_block, minlength=len(dims)
            )
            total += int((sizes.cpu() * torch.tensor(dims)).sum())
        return total

    def dimension_report(self) -> dict[str, Any]:
        """Chosen dimensions per block: rows, frequency range, :math:`d_s`, mean
        :math:`\\alpha`; and the parameter counts."""
        roles = {}
        dims = self.block_dims()
        for role, attr in self._roles.items():
            table = getattr(self.base, attr)
            block = table.row_block.cpu().numpy()
            freq = self.block_freq[role]
            searched = getattr(self, "searched_alpha", {}).get(role)
            alpha = table.alpha.detach().cpu() if isinstance(table, SelectedEmbedding) else None
            if searched is not None:  # alpha as the search left it (before folding)
                alpha = searched
            rows = []
            for s, d in enumerate(dims[role]):
                members = freq[block == s]
                rows.append(
                    {
                        "block": s,
                        "rows": len(members),
                        "freq_max": int(members.max()) if len(members) else 0,
                        "freq_min": int(members.min()) if len(members) else 0,
                        "dim": int(d),
                        "alpha_mean": float(alpha[s].mean()) if alpha is not None else None,
                    }
                )
            roles[role] = rows
        full, kept = self.full_parameters(), self.kept_parameters()
        return {
            "base": self.config.base,
            "embedding_dim": {
                role: int(getattr(self.base, attr).embedding_dim)
                for role, attr in self._roles.items()
            },
            "full_parameters": full,
            "kept_parameters": kept,
            "kept_ratio": kept / full if full else 0.0,
            "budget": self.budget(),
            "blocks": roles,
        }

    # -- schedule (the trainer's hooks) -----------------------------------------------------
    def phase(self, epoch: int) -> str:
        """The schedule's phase of ``epoch`` (0-based): ``warm``, ``search`` or ``finetune``
        (with fixed widths every epoch is ``finetune``; without fine-tuning, training stops at
        the first ``finetune`` epoch)."""
        cfg = self.config
        if cfg.fixed_allocation():
            return "finetune"
        if epoch < cfg.warm_start_epochs:
            return "warm"
        if epoch < cfg.warm_start_epochs + cfg.search_epochs:
            return "search"
        return "finetune"

    def schedule_epochs(self) -> int:
        """The fewest ``train.epochs`` the schedule needs: warm start and search, plus one
        fine-tuning epoch when fine-tuning follows (pruning happens at the start of it); 1
        with fixed widths."""
        cfg = self.config
        if cfg.fixed_allocation():
            return 1
        return cfg.warm_start_epochs + cfg.search_epochs + int(cfg.finetune)

    def check_train_config(self, train: TrainConfig) -> None:
        """Refuse a ``train.epochs`` that ends training before the schedule does (the
        trainer's hook, also called by ``recsys dnis`` and ``recsys tune`` before any
        training): warm start and search alone would never prune, and the saved model would
        be pruned at save time from an :math:`\\alpha` that was never searched.

        Raises:
            ConfigError: ``train.epochs`` below :meth:`schedule_epochs`.
        """
        need = self.schedule_epochs()
        if train.epochs >= need:
            return
        cfg = self.config
        schedule = (
            f"model.warm_start_epochs={cfg.warm_start_epochs} + "
            f"model.search_epochs={cfg.search_epochs}"
        )
        if cfg.finetune:
            schedule += " + 1 fine-tuning epoch (model.finetune=true)"
            ends = "pruning and at least one fine-tuning epoch"
        else:
            ends = "the end of the search (model.finetune=false)"
        raise ConfigError(
            f"train.epochs={train.epochs} is too few for the DNIS schedule: {schedule} need "
            f"train.epochs >= {need}, so that training reaches {ends}; raise train.epochs "
            "or shorten model.warm_start_epochs / model.search_epochs"
        )

    def begin_epoch(self, epoch: int) -> EpochPlan:
        if self.is_compact():
            return EpochPlan(stop=True)
        phase = self.phase(epoch)
        frozen = phase == "search" and not self.config.search_dense
        # the search may freeze the base's other weights; tables and alpha are never frozen
        own = set()
        for w in self._wrappers().values():
            own |= {id(w.embedding.weight), id(w.alpha)}
        for p in self.base.parameters():
            if id(p) not in own:
                p.requires_grad_(not frozen)
        if phase == "warm":
            return EpochPlan(patience=False)
        if phase == "search":
            return EpochPlan(auxiliary=True, patience=False)
        if self.config.fixed_allocation():
            if not bool(self.pruned):
                self.prune()
            return EpochPlan()
        if not self.config.finetune:
            return EpochPlan(stop=True)
        if bool(self.pruned):
            return EpochPlan()
        self.prune()
        if self.config.finetune_from == "scratch":
            self._reinitialise_weights()
            return EpochPlan(restart=True)
        # the epochs before validated other widths (each pruned from its own state)
        return EpochPlan(reselect=self.config.best_epoch_from == "finetune")

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        if not self.is_fitted() or self.is_compact():
            return []
        return [w.alpha for w in self._wrappers().values()]

    def auxiliary_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        cfg = self.config
        return AlphaOptimizer(
            params, lr=cfg.alpha_lr, rule=cfg.alpha_optimizer, normalize=cfg.alpha_grad_norm
        )

    @contextmanager
    def _alpha_in_graph(self) -> Iterator[None]:
        wrappers = list(self._wrappers().values())
        for w in wrappers:
            w.alpha_grad = True
        try:
            yield
        finally:
            for w in wrappers:
                w.alpha_grad = False

    def auxiliary_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        r"""The base's task loss on a validation batch, ``task``, plus ``l1``
        :math:`\lambda_1 \lVert\alpha\rVert_1`.

        Only the task loss, as in the authors' search: the base's regularisers and auxiliary
        tasks (an L2 penalty on the looked-up embeddings, which scales with
        :math:`\alpha^2` and would push every :math:`\alpha` down beside the L1 term; the
        two-tower's SSL loss on items drawn from the catalogue, not from the validation
        batch) are left out. A base without :meth:`~Recommender.example_losses` gives its
        ``loss`` terms less any named ``reg``.
        """
        self._clear_view()
        with self._alpha_in_graph():
            if type(self.base).example_losses is not Recommender.example_losses:
                losses, _regularisers = self.base.example_losses(batch)
                terms = {"task": losses.mean()}
            else:
                terms = {k: v for k, v in self.base.loss(batch).items() if k != "reg"}
            if self.config.l1_weight > 0:
                alphas = [w.alpha for w in self._wrappers().values()]
                terms["l1"] = self.config.l1_weight * sum(a.abs().sum() for a in alphas)
        return terms

    # -- pruning ----------------------------------------------------------------------------
    @torch.no_grad()
    def target_masks(self) -> dict[str, Tensor]:
        """Attribute -> 0/1 mask ``[S, K]`` pruning the current :math:`\\alpha \\odot E` to the
        budget."""
        wrappers = self._wrappers()
        attrs = list(wrappers)
        scores = [wrappers[a].cell_scores(self.config.score_normalization) for a in attrs]
        sizes = [wrappers[a].block_sizes() for a in attrs]
        order = None
        if self.config.structure == "nested":
            # a column's importance: its score summed over every row of every table
            importance = sum(
                (size.to(score.dtype).unsqueeze(1) * score).sum(0)
                for score, size in zip(scores, sizes, strict=True)
            )
            order = torch.argsort(importance, descending=True, stable=True)
        masks = select_cells(scores, sizes, self.budget(), self.config.min_dim, order)
        return dict(zip(attrs, masks, strict=True))

    def _deployed_masks(self) -> dict[str, Tensor]:
        if self.is_compact():
            return {}
        if bool(self.pruned):
            return {a: w.mask for a, w in self._wrappers().items()}
        return self._pruning_masks()

    def _pruning_masks(self) -> dict[str, Tensor]:
        """The masks pruning fixes: the given widths, or the current state pruned to budget."""
        return self.fixed_masks() if self.config.fixed_allocation() else self.target_masks()

    @torch.no_grad()
    def prune(self) -> None:
        """Fix the pruning mask from the current state; with ``fold_alpha``, fold
        :math:`\\alpha` into the weights (:math:`E \\leftarrow \\alpha \\odot E`,
        :math:`\\alpha \\leftarrow 1`: the same function, but fine-tuning steps are no longer
        scaled by :math:`\\alpha`). With ``block_dims`` or ``mde_exponent`` the mask is the
        given widths."""
        for attr, mask in self._pruning_masks().items():
            self._wrappers()[attr].mask.copy_(mask)
        self.pruned.fill_(True)
        self._clear_view()
        # alpha as searched, for the reports after folding (not part of the state)
        self.searched_alpha = {
            role: self._wrappers()[attr].alpha.detach().cpu().clone()
            for role, attr in self._roles.items()
        }
        report = self.dimension_report()
        if self.config.fold_alpha:
            for w in self._wrappers().values():
                w.embedding.weight.mul_((w.alpha * w.mask).index_select(0, w.row_block))
                w.alpha.fill_(1.0)
        log.info(
            "DNIS pruned to %d of %d ID-embedding parameters (%.3f, %s); dims per block: %s%s",
            report["kept_parameters"],
            report["full_parameters"],
            report["kept_ratio"],
            "fixed widths" if self.config.fixed_allocation() else "searched",
            {role: [r["dim"] for r in rows] for role, rows in report["blocks"].items()},
            self._saved_note(),
        )
        for role, rows in report["blocks"].items():
            empty = [r for r in rows if r["dim"] == 0 and r["rows"] > 0]
            if empty:
                log.warning(
                    "DNIS pruned %s block(s) %s (%d rows) to width 0: those %ss keep no "
                    "embedding (a dot-product base scores every pair with them 0); "
                    "model.min_dim=1 keeps a column in every block",
                    role,
                    [r["block"] for r in empty],
                    sum(r["rows"] for r in empty),
                    role,
                )

    def _saved_note(self) -> str:
        """Which state the run saves, for the pruning log line."""
        cfg = self.config
        if cfg.fixed_allocation() or cfg.best_epoch_from == "finetune":
            return "; the saved model is the best fine-tuning epoch, at these widths"
        if cfg.finetune_from == "scratch":
            return "; the saved model is the best retraining epoch, at these widths"
        return (
            "; the saved model is the best epoch of any phase (model.best_epoch_from=any): "
            "a warm-start or search epoch that validated better is pruned from its own state "
            "when saved, possibly to other widths"
        )

    @torch.no_grad()
    def _reinitialise_weights(self) -> None:
        """Fresh weights under the fixed mask: the base's own initialisation, ``alpha`` = 1."""
        masks = {a: w.mask.clone() for a, w in self._wrappers().items()}
        self.reset_parameters()
        for attr, w in self._wrappers().items():
            w.mask.copy_(masks[attr])
            w.alpha.fill_(1.0)
        self.pruned.fill_(True)
        log.info("DNIS: retraining the pruned architecture from freshly initialised weights")

    def _set_view(self) -> None:
        if self.is_compact():
            return
        if bool(self.pruned):
            self._clear_view()
            return
        for attr, mask in self._deployed_masks().items():
            self._wrappers()[attr].view_mask = mask

    def _clear_view(self) -> None:
        if self.is_fitted() and not self.is_compact():
            for w in self._wrappers().values():
                w.view_mask = None

    def train(self, mode: bool = True) -> DNIS:
        super().train(mode)
        if mode:
            self._clear_view()
        return self

    # -- training ---------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        self._clear_view()
        return self.base.loss(batch)

    def example_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        self._clear_view()
        return self.base.example_losses(batch)

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        # the base's own per-epoch state and diagnostics, if it keeps any
        hook = getattr(self.base, "on_epoch_end", None)
        return dict(hook(epoch)) if hook is not None else {}

    # -- scoring: always the deployed (pruned-to-budget) model ------------------------------
    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        self._set_view()
        return self.base.scorer(history)

    def representations(self, history: sp.csr_array | None = None) -> dict[str, Tensor]:
        self.check_fitted()
        self._set_view()
        if self.fold_in:
            return self.base.representations(history)
        return self.base.representations()

    def scorer_from(self, representations: dict[str, Tensor]) -> ScoreFn:
        self._set_view()
        return self.base.scorer_from(representations)

    # -- the deployable state ---------------------------------------------------------------
    def export_state_dict(self) -> dict[str, Tensor]:
        """The state with every ID table stored per block at its chosen width
        (:class:`MixedDimEmbedding`'s keys), :math:`\\alpha` folded in."""
        state = self.state_dict()
        if self.is_compact():
            return state
        masks = self._deployed_masks()
        for attr, wrapper in self._wrappers().items():
            prefix = f"base.{attr}."
            for key in [k for k in state if k.startswith(prefix)]:
                del state[key]
            tables, cols = wrapper.compact(masks[attr])
            for s, (table, col) in enumerate(zip(tables, cols, strict=True)):
                state[f"{prefix}tables.{s}"] = table
                state[f"{prefix}cols_{s}"] = col
        state["pruned"] = torch.tensor(True)
        return state

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load a training state, or a compact one (:meth:`export_state_dict`), which first
        switches this model to per-block tables of the stored widths."""
        if self.is_fitted() and not self.is_compact():
            compact = [a for a in self._roles.values() if f"base.{a}.tables.0" in state_dict]
            if compact:
                self._to_compact(state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _to_compact(self, state: dict[str, Tensor]) -> None:
        for attr, wrapper in self._wrappers().items():
            prefix = f"base.{attr}."
            cols = []
            for s in range(wrapper.n_blocks):
                key = f"{prefix}cols_{s}"
                if key not in state:
                    raise ConfigError(f"DNIS checkpoint: {key} is missing")
                cols.append(state[key])
            compact = MixedDimEmbedding(wrapper.row_block, wrapper.embedding_dim, cols)
            setattr(self.base, attr, compact)
        self.pruned.fill_(True)

    def write_artifacts(self, run_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """``dnis_dimensions.json``: the chosen dimension of every block and the counts."""
        from recsys.fileio import atomic_write_text
        from recsys.jsonio import dumps_json

        path = Path(run_dir) / "dnis_dimensions.json"
        atomic_write_text(path, dumps_json(self.dimension_report(), indent=2) + "\n")
        return [path]
