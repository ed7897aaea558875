"""LightGCN: linear graph propagation over the user-item graph, trained with BPR."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import Tensor, nn

from recsys.data.dataset import Dataset
from recsys.models.base import DotProductScorer, ModelConfig, Recommender, ScoreFn
from recsys.models.bpr import bpr_example_losses, bpr_loss, l2_penalty
from recsys.models.registry import register


def normalized_adjacency(train: sp.csr_array) -> sp.csr_array:
    r"""The symmetric normalised bipartite adjacency
    :math:`\tilde{\mathbf{A}} = \mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}` with
    :math:`\mathbf{A} = \begin{pmatrix} 0 & \mathbf{R} \\ \mathbf{R}^\top & 0 \end{pmatrix}`
    over ``n_users + n_items`` nodes (isolated nodes keep zero rows).
    """
    n_users, n_items = train.shape
    r = sp.csr_array(train, dtype=np.float32)
    adj = sp.block_array([[None, r], [r.T, None]], format="csr").astype(np.float32)
    adj.resize((n_users + n_items, n_users + n_items))
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
    d = sp.diags_array(inv_sqrt)
    out = sp.csr_array(d @ adj @ d)
    out.sort_indices()
    return out


class SymmetricSpMM(torch.autograd.Function):
    r""":math:`\tilde{A}X` for a symmetric sparse :math:`\tilde{A}`, whose gradient
    :math:`\tilde{A}^\top G = \tilde{A}G` reuses the same CSR matrix.

    ``torch.sparse.mm``'s own backward transposes the CSR matrix (a sort of every entry) on
    each call; on CPU that costs more than the products themselves.
    """

    @staticmethod
    def forward(ctx: Any, adj: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:  # type: ignore[override]
        return None, torch.sparse.mm(ctx.adj, grad)


class LightGCNConfig(ModelConfig):
    """Hyper-parameters of :class:`LightGCN`."""

    embedding_size: int = Field(64, gt=0)
    """Dimension of the layer-0 user and item embeddings."""
    n_layers: int = Field(2, ge=0)
    """Propagation layers :math:`L`."""
    reg_weight: float = Field(1e-4, ge=0.0)
    """:math:`\\lambda`, L2 penalty on the batch's layer-0 embeddings."""
    init_std: float = Field(0.1, gt=0.0)
    """Standard deviation of the normal initialisation of layer-0 embeddings (0.1 in the
    authors' code; on MovieLens-100k it converges in a third of the epochs of Xavier init)."""
    propagation: Literal["sparse", "pyg"] = "sparse"
    """Backend of :math:`\\tilde{A}E`: torch sparse CSR matmul or torch-geometric's ``LGConv``
    (``benchmarks/speed_ml100k.py`` measures both; ``sparse`` is faster on CPU)."""


@register
class LightGCN(DotProductScorer, Recommender):
    r"""LightGCN from `"LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation" <https://arxiv.org/abs/2002.02126>`_ (He et al., SIGIR 2020).

    .. math::
        \mathbf{E}^{(l+1)} = \tilde{\mathbf{A}}\mathbf{E}^{(l)}, \qquad
        \mathbf{E} = \frac{1}{L+1}\sum_{l=0}^{L} \mathbf{E}^{(l)}, \qquad
        \hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_{(u,i,j)} \ln\sigma(\hat{y}_{ui} - \hat{y}_{uj})
        + \frac{\lambda}{2B}\sum_{(u,i,j)}\left(\lVert\mathbf{e}^{(0)}_u\rVert^2
        + \lVert\mathbf{e}^{(0)}_i\rVert^2 + \lVert\mathbf{e}^{(0)}_j\rVert^2\right)

    :math:`\tilde{\mathbf{A}}` is built by :func:`normalized_adjacency` from the training
    matrix and kept as a buffer. The full graph is propagated once per training batch, and
    once per evaluation by :meth:`scorer`.

    Shapes:
        - loss: batch ``user``, ``pos``, ``neg`` :math:`[B]`
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "lightgcn"
    config_class = LightGCNConfig
    batch_kind = "pairwise"

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        d = self.config.embedding_size
        self.embedding = nn.Embedding(self.n_users + self.n_items, d)
        adj = normalized_adjacency(train)
        self.register_buffer(
            "adj_crow", torch.from_numpy(adj.indptr.astype(np.int64)), persistent=False
        )
        self.register_buffer(
            "adj_col", torch.from_numpy(adj.indices.astype(np.int64)), persistent=False
        )
        self.register_buffer("adj_val", torch.from_numpy(adj.data), persistent=False)
        self._conv = None
        if self.config.propagation == "pyg":
            from torch_geometric.nn import LGConv  # lazy: only this backend needs PyG

            self._conv = LGConv(normalize=False)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embedding.weight, std=self.config.init_std)

    def id_embeddings(self) -> dict[str, str]:
        # one table, users then items (read only through .weight)
        return {"node": "embedding"}

    def _adjacency(self) -> Tensor:
        n = self.n_users + self.n_items
        return torch.sparse_csr_tensor(self.adj_crow, self.adj_col, self.adj_val, (n, n))

    def propagate(self) -> tuple[Tensor, Tensor]:
        """Final user and item embeddings: the mean of layers :math:`0..L`."""
        final = self.node_embeddings()
        return final[: self.n_users], final[self.n_users :]

    def node_embeddings(self) -> Tensor:
        r""":meth:`propagate`'s two tables as one ``[n_users + n_items, d]`` table, users first
        (the layout of the embedding table and of :math:`\tilde{\mathbf{A}}`)."""
        x = self.embedding.weight
        # a running sum instead of stacking the layers: one fewer copy of the whole table
        total = x
        if self.config.propagation == "pyg":
            rows = torch.repeat_interleave(
                torch.arange(len(self.adj_crow) - 1, device=x.device), self.adj_crow.diff()
            )
            # LGConv aggregates messages from edge_index[0] (source) into edge_index[1]
            edge_index = torch.stack([self.adj_col, rows])
            for _ in range(self.config.n_layers):
                x = self._conv(x, edge_index, self.adj_val)
                total = total + x
        else:
            adj = self._adjacency()
            for _ in range(self.config.n_layers):
                x = SymmetricSpMM.apply(adj, x)
                total = total + x
        return total / (self.config.n_layers + 1)

    def _triplets(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Positive scores ``[B]``, negative scores ``[B]`` or ``[B, n]`` (``n`` negatives per
        positive), and the reg terms."""
        u, i, j = batch["user"], batch["pos"], batch["neg"]
        nodes = torch.cat([u, i + self.n_users, j.reshape(-1) + self.n_users])
        # one gather per table: each gather's backward zero-fills a gradient as large as the
        # whole table (index_select's index_add, still cheaper on CPU than advanced indexing's)
        gathered = self.node_embeddings().index_select(0, nodes)
        e_u, e_i, e_j = gathered.split([len(u), len(u), j.numel()])
        pos = (e_u * e_i).sum(-1)
        if j.dim() == 2:
            neg = (e_u.unsqueeze(1) * e_j.view(*j.shape, -1)).sum(-1)
        else:
            neg = (e_u * e_j).sum(-1)
        terms = {}
        if self.config.reg_weight > 0:
            ego = self.embedding.weight.index_select(0, nodes)
            terms["reg"] = self.config.reg_weight * l2_penalty(
                *ego.split([len(u), len(u), j.numel()])
            )
        return pos, neg, terms

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pos, neg, reg = self._triplets(batch)
        return {"bpr": bpr_loss(pos, neg), **reg}

    def example_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        r"""Per-triplet BPR loss :math:`-\ln\sigma(\hat{y}_{ui} - \hat{y}_{uj})` :math:`[B]`
        and the L2 term on the layer-0 embeddings."""
        pos, neg, reg = self._triplets(batch)
        return bpr_example_losses(pos, neg), reg

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        with torch.no_grad():
            users_f, items_f = self.propagate()
        return self.scorer_from({"user": users_f, "item": items_f})

    def representations(self) -> dict[str, Tensor]:
        with torch.no_grad():
            users_f, items_f = self.propagate()
        return {
            "user": users_f,
            "item": items_f,
            "user_layer0": self.embedding.weight[: self.n_users],
            "item_layer0": self.embedding.weight[self.n_users :],
        }
