"""Item-based k-nearest-neighbours with cosine similarity."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import Tensor

from recsys.data.dataset import Dataset
from recsys.models.base import ModelConfig, Recommender, ScoreFn, history_rows
from recsys.models.registry import register


class ItemKNNConfig(ModelConfig):
    """Hyper-parameters of :class:`ItemKNN`."""

    k: int = Field(100, gt=0)
    """Neighbours kept per item."""
    shrink: float = Field(0.0, ge=0.0)
    """Shrinkage added to the cosine denominator (damps similarities from few co-occurrences)."""


@register
class ItemKNN(Recommender):
    r"""Item-based collaborative filtering (Sarwar et al., WWW 2001; RecBole's ``ItemKNN``).

    With the binary training matrix :math:`\mathbf{R}` and item columns :math:`\mathbf{r}_i`,

    .. math::
        s_{ij} = \frac{\mathbf{r}_i^\top \mathbf{r}_j}
                      {\lVert \mathbf{r}_i \rVert \lVert \mathbf{r}_j \rVert + \text{shrink}},
        \qquad
        \hat{y}_{ui} = \sum_{j \in \mathcal{N}_k(i)} r_{uj}\, s_{ij}

    where :math:`\mathcal{N}_k(i)` holds the :math:`k` most similar items to :math:`i`
    (itself excluded). The similarity is built in item blocks, so memory stays at
    ``block x n_items`` plus the ``n_items x k`` neighbour lists.

    Shapes:
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "itemknn"
    config_class = ItemKNNConfig
    batch_kind = "none"
    fold_in = True  # scores from the history rows alone

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        k = min(self.config.k, max(1, self.n_items - 1))
        self.register_buffer("neighbor_index", torch.zeros(self.n_items, k, dtype=torch.long))
        self.register_buffer("neighbor_weight", torch.zeros(self.n_items, k))

    def fit(self, train: sp.csr_array, block: int = 1024) -> None:
        self.check_fit_input(train)
        k = self.neighbor_index.shape[1]
        item_user = sp.csr_array(train.T.astype(np.float32))
        norms = np.sqrt(np.asarray(item_user.multiply(item_user).sum(axis=1))).ravel()
        for start in range(0, self.n_items, block):
            stop = min(start + block, self.n_items)
            co = (item_user[start:stop] @ item_user.T).toarray()
            sim = co / (norms[start:stop, None] * norms[None, :] + self.config.shrink + 1e-12)
            sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not its own neighbour
            top = torch.topk(torch.from_numpy(sim.astype(np.float32)), k, dim=1)
            self.neighbor_index[start:stop] = top.indices
            self.neighbor_weight[start:stop] = top.values.clamp_min(0.0)

    def similarity(self) -> Tensor:
        """The sparse ``n_items x n_items`` matrix :math:`S` with ``S[j, i] = s_ij`` kept."""
        rows = self.neighbor_index.reshape(-1)
        cols = torch.arange(self.n_items, device=rows.device).repeat_interleave(
            self.neighbor_index.shape[1]
        )
        return torch.sparse_coo_tensor(
            torch.stack([rows, cols]), self.neighbor_weight.reshape(-1), (self.n_items,) * 2
        ).coalesce()

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        history = self.history_matrix(history)
        sim_t = self.similarity().t().coalesce().to_sparse_csr()  # S^T, so rows are items i

        def score(users: Tensor) -> Tensor:
            # float32 rows; the similarity's dtype if the model was cast (model.double())
            hist = history_rows(history, users, sim_t.device).to(sim_t.dtype)
            # (S^T @ H^T)^T = H @ S: one sparse-dense product per batch
            return torch.sparse.mm(sim_t, hist.t()).t()

        return score

    def representations(self, history: sp.csr_array | None = None) -> dict[str, Tensor]:
        return {"item_neighbors": self.neighbor_weight}
