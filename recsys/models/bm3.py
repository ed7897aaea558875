"""BM3: bootstrapped multimodal recommendation, with no negatives and no auxiliary graphs."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError, DataError
from recsys.models.base import DotProductScorer, ModelConfig, Recommender, ScoreFn
from recsys.models.lightgcn import SymmetricSpMM, normalized_adjacency
from recsys.models.registry import register

log = logging.getLogger(__name__)

WIDE_MODALITY = 8192
"""Modalities wider than this many columns get a warning with the memory they take (BM3 keeps
each as a dense matrix, about four times); MMRec's 4096-d image features stay below it."""


def dropout_mask(like: Tensor, keep: float) -> Tensor:
    r"""A dropout mask shaped like ``like``: :math:`1/q` with probability :math:`q` = ``keep``,
    else 0, as ``like``'s dtype.

    On CPU the uniform draws are 16-bit slices of numpy's raw PCG64 output, seeded from torch's
    generator (so ``torch.manual_seed`` and a restored torch RNG state reproduce the mask);
    that is 6-20 times cheaper than torch's CPU uniform or Bernoulli sampler, which would
    otherwise be a large share of a BM3 step. :math:`q` is rounded to a multiple of :math:`2^{-16}`.
    """
    if like.device.type != "cpu":
        return (torch.rand_like(like) < keep).to(like.dtype) / keep
    seed = int(torch.randint(0, 2**62, (1,)).item())
    n = like.numel()
    # four 16-bit draws per 64-bit output: no bounded-integer sampling, no per-draw call
    bits = np.random.PCG64(seed).random_raw((n + 3) // 4).view(np.uint16)[:n]
    threshold = max(1, round(keep * (1 << 16)))
    mask = np.empty(like.shape, dtype=np.float32)
    np.less(bits.reshape(like.shape), threshold, out=mask, casting="unsafe")
    mask *= (1 << 16) / threshold
    return torch.from_numpy(mask).to(like.dtype)


class CosineToTargets(torch.autograd.Function):
    r"""Row-wise cosines of rows :math:`\mathbf{p}_r` with constant targets:
    :math:`s^k_r = \hat{\mathbf{p}}_r^\top\mathbf{g}^k_r` for targets
    :math:`\mathbf{g}^1, \dots, \mathbf{g}^K` (no gradient), where
    :math:`\hat{\mathbf{p}}_r = \mathbf{p}_r / \max(\lVert\mathbf{p}_r\rVert, \epsilon)`
    as in :func:`torch.nn.functional.normalize`. With :math:`n_r = \lVert\mathbf{p}_r\rVert`
    and upstream gradients :math:`a^k_r`,

    .. math::
        \frac{\partial}{\partial\mathbf{p}_r}\sum_k a^k_r s^k_r
        = \frac{1}{n_r}\Big(\sum_k a^k_r\mathbf{g}^k_r
        - \big(\textstyle\sum_k a^k_r s^k_r\big)\hat{\mathbf{p}}_r\Big).

    The same values as ``(F.normalize(p) * g).sum(-1)`` per target, in fewer passes over the
    rows: autograd through ``normalize`` materialises :math:`\hat{\mathbf{p}}` and walks the
    division, the norm and each target's product separately, and on CPU a BM3 step is mostly
    such memory-bound passes.
    """

    eps = 1e-12

    @staticmethod
    def forward(ctx: Any, p: Tensor, *targets: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        norm = torch.linalg.vector_norm(p, dim=-1)
        inv = 1.0 / norm.clamp_min(CosineToTargets.eps)
        dots = tuple(torch.linalg.vecdot(p, g) * inv for g in targets)
        # a row whose norm is clamped is divided by a constant: no norm term in its gradient
        ctx.save_for_backward(p, inv, (norm > CosineToTargets.eps).to(p.dtype), *targets, *dots)
        ctx.n_targets = len(targets)
        return dots

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        p, inv, active, *rest = ctx.saved_tensors
        targets, dots = rest[: ctx.n_targets], rest[ctx.n_targets :]
        grad_p = torch.zeros_like(p)
        coef = torch.zeros_like(inv)
        for grad, g, s in zip(grads, targets, dots, strict=True):
            a = grad * inv
            grad_p.addcmul_(g, a.unsqueeze(1))
            coef += a * s
        grad_p.addcmul_(p, (-coef * inv * active).unsqueeze(1))
        return (grad_p, *(None for _ in targets))


class BM3Config(ModelConfig):
    """Hyper-parameters of :class:`BM3`; defaults are the paper's (Baby: one layer, dropout 0.5,
    reg 0.1; the grid is ``n_layers`` {1, 2}, ``dropout`` {0.3, 0.5}, ``reg_weight``
    {0.1, 0.01})."""

    embedding_size: int = Field(64, gt=0)
    """Dimension :math:`d` of the ID embeddings, the modality latents and the predictor."""
    n_layers: int = Field(1, ge=0)
    """LightGCN propagation layers :math:`L`."""
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    """Dropout rate :math:`p` that makes the target view."""
    reg_weight: float = Field(0.1, ge=0.0)
    """:math:`\\lambda`, weight of the norm penalty on the propagated embeddings."""
    cl_weight: float = Field(2.0, ge=0.0)
    """:math:`\\alpha`, weight of the alignment and masked losses (2.0 in the authors' code)."""
    modalities: list[str] | None = None
    """Item modalities by name (``text``, ``image``, ``genre``, ``a+b``, ...); None takes the
    dataset's defaults (:func:`recsys.data.features.default_modalities`), ``[]`` gives the
    ID-only form."""
    text_fields: list[str] | None = None
    """Item fields encoded into a derived ``text`` modality; None takes the dataset card's."""
    train_features: bool = True
    """Fine-tune the raw modality features as parameters, as the authors' code does."""


class ModalityBranch(nn.Module):
    r"""One modality :math:`m`: its raw item features :math:`\mathbf{F}_m` and a linear
    projector :math:`\mathbf{h}^m_i = \mathbf{W}_m\mathbf{F}_m[i] + \mathbf{b}_m`.

    Args:
        features (Tensor): raw item features :math:`[|\mathcal{I}|, d_m]`.
        dim (int): output dimension :math:`d`.
        trainable (bool): fine-tune :math:`\mathbf{F}_m` (reset restores the raw values).

    Shapes:
        - input: items :math:`[B]`
        - output: :math:`[B, d]`
    """

    def __init__(self, features: Tensor, dim: int, trainable: bool = True) -> None:
        super().__init__()
        # the raw values, kept to reset the trainable copy; rebuilt from the data at setup
        self.register_buffer("raw", features, persistent=False)
        if trainable:
            self.table = nn.Parameter(features.clone())
        else:
            self.register_buffer("table", features, persistent=False)
        self.projector = nn.Linear(features.shape[1], dim)

    def reset_parameters(self) -> None:
        if isinstance(self.table, nn.Parameter):
            with torch.no_grad():
                self.table.copy_(self.raw)
        self.projector.reset_parameters()
        nn.init.xavier_normal_(self.projector.weight)

    def forward(self, items: Tensor | None = None) -> Tensor:
        if items is None:
            return self.projector(self.table)
        if len(items) >= self.table.shape[0]:
            # a batch at least as long as the catalogue: projecting every item once is cheaper
            return self.projector(self.table).index_select(0, items)
        return self.projector(self.table.index_select(0, items))

    def extra_repr(self) -> str:
        return f"{self.table.shape[1]} -> {self.projector.out_features}"


@register
class BM3(DotProductScorer, Recommender):
    r"""BM3 from `"Bootstrap Latent Representations for Multi-modal Recommendation"
    <https://arxiv.org/abs/2207.05969>`_ (Zhou et al., WWW 2023).

    A LightGCN backbone over the training graph gives user and item representations, with the
    item's ID embedding added back after layer averaging:

    .. math::
        \mathbf{H} = \frac{1}{L+1}\sum_{l=0}^{L}\tilde{\mathbf{A}}^l
            \begin{pmatrix}\mathbf{E}_u\\ \mathbf{E}_i\end{pmatrix},\qquad
        \mathbf{h}_u = \mathbf{H}_u,\qquad \mathbf{h}_i = \mathbf{H}_i + \mathbf{E}_i[i],\qquad
        \mathbf{h}^m_i = \mathbf{W}_m\mathbf{F}_m[i] + \mathbf{b}_m

    Each representation :math:`x \in \{u, i, m\}` gets two views: an online view through one
    predictor :math:`f_p` (a linear layer shared by users, items and every modality) and a
    target view that is dropout of the same representation with the gradient stopped (no
    momentum encoder, no graph augmentation):

    .. math::
        \tilde{\mathbf{h}}_x = f_p(\mathbf{h}_x),\qquad
        \dot{\mathbf{h}}_x = \operatorname{sg}\left(\operatorname{Dropout}_p(\mathbf{h}_x)\right)

    With :math:`C(\mathbf{a}, \mathbf{b}) = 1 - \cos(\mathbf{a}, \mathbf{b})` averaged over a
    batch of positive pairs :math:`(u, i)` (no negatives), the loss terms are

    .. math::
        \mathcal{L}_\text{rec} = C(\tilde{\mathbf{h}}_u, \dot{\mathbf{h}}_i)
            + C(\tilde{\mathbf{h}}_i, \dot{\mathbf{h}}_u),\qquad
        \mathcal{L}^m_\text{align} = C(\tilde{\mathbf{h}}^m_i, \dot{\mathbf{h}}_i),\qquad
        \mathcal{L}^m_\text{mask} = C(\tilde{\mathbf{h}}^m_i, \dot{\mathbf{h}}^m_i)

    .. math::
        \mathcal{L} = \mathcal{L}_\text{rec}
            + \alpha\sum_m\left(\mathcal{L}^m_\text{align} + \mathcal{L}^m_\text{mask}\right)
            + \lambda\,\frac{\lVert\mathbf{H}_U\rVert_F + \lVert\mathbf{H}_I\rVert_F}{|\mathcal{I}|}

    where the norms (not squared) are over all users' and items' representations. The trainer
    logs the terms as ``rec``, ``align_<m>``, ``mask_<m>`` and ``reg``. Scores use only the
    online ID views, :math:`\hat{y}_{ui} = f_p(\mathbf{h}_u)^\top f_p(\mathbf{h}_i)`: modality
    features shape training through the shared predictor and are not read at scoring time.
    Without modalities (none given, or none in the data) BM3 is its ID-only form,
    :math:`\mathcal{L}_\text{rec} + \lambda\mathcal{L}_\text{reg}`, and the log says so.

    Modalities come from :func:`recsys.data.features.item_modalities` applied to the dataset
    passed to :meth:`setup`; raw features are fine-tuned (``train_features``) as in the
    authors' code.

    Shapes:
        - loss: batch ``user``, ``item`` :math:`[B]`
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "bm3"
    config_class = BM3Config
    batch_kind = "pairs"

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        cfg = self.config
        d = cfg.embedding_size
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)
        self.predictor = nn.Linear(d, d)
        adj = normalized_adjacency(train)
        self.register_buffer(
            "adj_crow", torch.from_numpy(adj.indptr.astype(np.int64)), persistent=False
        )
        self.register_buffer(
            "adj_col", torch.from_numpy(adj.indices.astype(np.int64)), persistent=False
        )
        self.register_buffer("adj_val", torch.from_numpy(adj.data), persistent=False)
        self.modalities = nn.ModuleDict()
        for key, matrix in self._modality_matrices(dataset).items():
            if matrix.shape[0] != self.n_items:
                raise DataError(
                    f"modality {key!r} has {matrix.shape[0]} rows but the training matrix has "
                    f"{self.n_items} items"
                )
            features = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))
            self.modalities[key] = ModalityBranch(features, d, cfg.train_features)
        if len(self.modalities):
            widths = ", ".join(f"{k} ({b.table.shape[1]}-d)" for k, b in self.modalities.items())
            log.info("BM3 modalities: %s", widths)
            self._warn_wide()
        else:
            hint = self._enable_hint(dataset)
            (log.warning if hint else log.info)(
                "BM3 without modalities: ID-only form (graph reconstruction and regulariser; "
                "no alignment or masked losses)%s",
                hint,
            )

    def _enable_hint(self, dataset: Dataset | None) -> str:
        """How to give BM3 modalities, when it took the defaults and got none although the
        data has item fields or tables it could use; else empty (an explicit ``[]``, or data
        without item features)."""
        from recsys.data.features import available_modalities, text_field_candidates

        if dataset is None or self.config.modalities is not None:
            return ""
        fields = text_field_candidates(dataset) if self.config.text_fields is None else []
        tables = available_modalities(dataset, self.config.text_fields)
        hints = []
        if fields:
            hints.append(
                f"set model.text_fields=[{','.join(fields)}] (or some of these fields of its "
                "item file) to encode a 'text' modality"
            )
        if tables:
            hints.append(f"name modalities in model.modalities (available: {', '.join(tables)})")
        if not hints:
            return ""
        return f"; dataset {dataset.name!r} has item features it does not use by default: " + (
            ", or ".join(hints)
        )

    def _warn_wide(self) -> None:
        """Warn about a modality wider than :data:`WIDE_MODALITY` columns (a ``token_seq``
        field with a large vocabulary becomes a dense multi-hot matrix): BM3 keeps it about
        four times (raw values, the trainable copy and Adam's two moments)."""
        for key, branch in self.modalities.items():
            rows, width = branch.raw.shape
            if width <= WIDE_MODALITY:
                continue
            copies = 4 if self.config.train_features else 1
            gib = copies * rows * width * branch.raw.element_size() / 2**30
            log.warning(
                "BM3 modality %r is %d columns wide (above %d): as a dense matrix it takes "
                "about %.2f GiB (%d copies of %d x %d float32); use a narrower field, or "
                "model.train_features=false to keep one copy",
                key, width, WIDE_MODALITY, gib, copies, rows, width,
            )  # fmt: skip

    def _modality_matrices(self, dataset: Dataset | None) -> dict[str, np.ndarray]:
        cfg = self.config
        if dataset is None:
            if cfg.modalities:
                raise ConfigError(
                    f"BM3 modalities {cfg.modalities} need the dataset's item features: call "
                    "setup(train, dataset)"
                )
            return {}
        from recsys.data.features import item_modalities

        for name in cfg.modalities or []:
            if not name or "." in name:
                raise ConfigError(f"modality name {name!r} is not valid (key model.modalities)")
        matrices = item_modalities(dataset, cfg.modalities, text_fields=cfg.text_fields)
        if cfg.text_fields is not None and "text" not in matrices:
            log.warning(
                "model.text_fields=%s has no effect: no 'text' modality is used", cfg.text_fields
            )
        return matrices

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.predictor.reset_parameters()
        nn.init.xavier_normal_(self.predictor.weight)
        for branch in self.modalities.values():
            branch.reset_parameters()

    @property
    def modality_names(self) -> list[str]:
        """Names of the modalities in use, in order (empty for the ID-only form)."""
        return list(self.modalities) if hasattr(self, "modalities") else []

    def _adjacency(self) -> Tensor:
        n = self.n_users + self.n_items
        return torch.sparse_csr_tensor(self.adj_crow, self.adj_col, self.adj_val, (n, n))

    def propagate(self) -> tuple[Tensor, Tensor]:
        r"""Online representations before the predictor: :math:`\mathbf{H}_U`
        :math:`[|\mathcal{U}|, d]` and :math:`\mathbf{H}_I + \mathbf{E}_i`
        :math:`[|\mathcal{I}|, d]`."""
        items = self.item_embedding.weight
        x = torch.cat([self.user_embedding.weight, items])
        total = x
        if self.config.n_layers:
            adj = self._adjacency()
            for _ in range(self.config.n_layers):
                x = SymmetricSpMM.apply(adj, x)
                total = total + x
        mean = total / (self.config.n_layers + 1)
        return mean[: self.n_users], mean[self.n_users :] + items

    def target(self, h: Tensor) -> Tensor:
        r"""The target view :math:`\operatorname{sg}(\operatorname{Dropout}_p(\mathbf{h}))`:
        dropout always on (it is the only augmentation), no gradient. Kept entries are scaled
        by :math:`1/(1-p)` as in inverted dropout (the cosine losses are scale-free anyway)."""
        with torch.no_grad():
            keep = 1.0 - self.config.dropout
            if keep >= 1.0:
                return h.detach().clone()
            return h.detach() * dropout_mask(h, keep)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        r"""The terms of the module docstring for a batch of positive pairs.

        Work is done once per *distinct* user and item of the batch: the predictor, the
        projectors and the dropout mask run on those rows (so a repeated item shares its
        target mask, as when the authors drop out the full matrix and then index it), and each
        batch mean of cosines is rewritten as a sum over distinct online rows,

        .. math::
            \frac{1}{B}\sum_{b}\hat{\mathbf{o}}_{r(b)}^\top\hat{\mathbf{t}}_{s(b)}
            = \frac{1}{B}\sum_{r}\hat{\mathbf{o}}_r^\top\mathbf{g}_r,\qquad
            \mathbf{g}_r = \sum_{b:\,r(b)=r}\hat{\mathbf{t}}_{s(b)},

        with unit-norm online rows :math:`\hat{\mathbf{o}}` and targets
        :math:`\hat{\mathbf{t}}`; :math:`\mathbf{g}` has no gradient, so autograd only
        touches the distinct rows, and :class:`CosineToTargets` takes the row cosines (both of
        a modality row's targets in one pass over it).
        """
        cfg = self.config
        users_h, items_h = self.propagate()
        u, i = batch["user"], batch["item"]
        users, u_inv = torch.unique(u, return_inverse=True)
        items, i_inv, i_count = torch.unique(i, return_inverse=True, return_counts=True)
        # index_select's backward (index_add) is cheaper on CPU than advanced indexing's
        ids = torch.cat([users_h.index_select(0, users), items_h.index_select(0, items)])
        views = [branch(items) for branch in self.modalities.values()]
        n_u, n_i, n_m = len(users), len(items), len(views)
        with torch.no_grad():
            # one dropout draw over every distinct row; the cosines below do not see its scale
            target = F.normalize(self.target(torch.cat([ids, *views])), dim=-1)
            t_user, t_item = target[:n_u], target[n_u : n_u + n_i]
            # per online row, the sum of the targets it is paired with in the batch
            to_user = torch.zeros_like(t_user).index_add_(0, u_inv, t_item.index_select(0, i_inv))
            to_item = torch.zeros_like(t_item).index_add_(0, i_inv, t_user.index_select(0, u_inv))
        scale = 1.0 / len(u)
        # one predictor for every row: users, items, then each modality's items
        (ids_cos,) = CosineToTargets.apply(self.predictor(ids), torch.cat([to_user, to_item]))
        terms = {"rec": 2.0 - scale * ids_cos.sum()}
        if n_m:
            with torch.no_grad():
                # the modality row of an item is paired with that item's own targets, once per
                # occurrence of the item in the batch
                count = i_count.to(ids.dtype).unsqueeze(1)
                to_id = (count * t_item).repeat(n_m, 1)
                to_own = count.repeat(n_m, 1) * target[n_u + n_i :]
            align, mask = CosineToTargets.apply(self.predictor(torch.cat(views)), to_id, to_own)
            for k, key in enumerate(self.modalities):
                block = slice(k * n_i, (k + 1) * n_i)
                terms[f"align_{key}"] = cfg.cl_weight * (1.0 - scale * align[block].sum())
                terms[f"mask_{key}"] = cfg.cl_weight * (1.0 - scale * mask[block].sum())
        if cfg.reg_weight > 0:
            norms = torch.linalg.matrix_norm(users_h) + torch.linalg.matrix_norm(items_h)
            terms["reg"] = cfg.reg_weight * norms / self.n_items
        return terms

    def example_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        r"""Per-pair loss :math:`[B]` and the regulariser: BM3 has no negatives, so pair
        :math:`b = (u, i)`'s loss is its share of every cosine term of :meth:`loss`,

        .. math::
            \ell_b = 2 - \hat{\mathbf{o}}_u^\top\hat{\mathbf{t}}_i
            - \hat{\mathbf{o}}_i^\top\hat{\mathbf{t}}_u
            + \lambda_{cl}\sum_m \left(2 - \hat{\mathbf{o}}^m_i{}^\top\hat{\mathbf{t}}_i
            - \hat{\mathbf{o}}^m_i{}^\top\hat{\mathbf{t}}^m_i\right)

        whose batch mean plus ``reg`` is the sum of :meth:`loss`'s terms (for the same
        dropout draw of the target view).
        """
        cfg = self.config
        users_h, items_h = self.propagate()
        u, i = batch["user"], batch["item"]
        users, u_inv = torch.unique(u, return_inverse=True)
        items, i_inv = torch.unique(i, return_inverse=True)
        latents = [users_h.index_select(0, users), items_h.index_select(0, items)]
        latents += [branch(items) for branch in self.modalities.values()]
        sizes = [len(users)] + [len(items)] * (1 + len(self.modalities))
        stacked = torch.cat(latents)
        online = F.normalize(self.predictor(stacked), dim=-1).split(sizes)
        with torch.no_grad():
            target = F.normalize(self.target(stacked), dim=-1).split(sizes)

        def c(rows: Tensor, row_index: Tensor, paired: Tensor, paired_index: Tensor) -> Tensor:
            pairs = rows.index_select(0, row_index) * paired.index_select(0, paired_index)
            return 1.0 - pairs.sum(-1)

        losses = c(online[0], u_inv, target[1], i_inv) + c(online[1], i_inv, target[0], u_inv)
        for k in range(2, 2 + len(self.modalities)):
            losses = losses + cfg.cl_weight * (
                c(online[k], i_inv, target[1], i_inv) + c(online[k], i_inv, target[k], i_inv)
            )
        reg = {}
        if cfg.reg_weight > 0:
            norms = torch.linalg.matrix_norm(users_h) + torch.linalg.matrix_norm(items_h)
            reg["reg"] = cfg.reg_weight * norms / self.n_items
        return losses, reg

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        with torch.no_grad():
            users_h, items_h = self.propagate()
            reps = {"user": self.predictor(users_h), "item": self.predictor(items_h)}
        return self.scorer_from(reps)

    def representations(self) -> dict[str, Tensor]:
        """``user``/``item``: the predictor outputs that scores are computed from;
        ``user_hidden``/``item_hidden``: the propagated representations before the predictor;
        ``item_<m>``: each modality's projected latent."""
        self.check_fitted()
        with torch.no_grad():
            users_h, items_h = self.propagate()
            out = {
                "user": self.predictor(users_h),
                "item": self.predictor(items_h),
                "user_hidden": users_h,
                "item_hidden": items_h,
            }
            for key, branch in self.modalities.items():
                out[f"item_{key}"] = branch()
        return out
