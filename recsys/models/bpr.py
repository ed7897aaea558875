"""Matrix factorisation trained with Bayesian Personalised Ranking."""

from __future__ import annotations

import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from recsys.data.dataset import Dataset
from recsys.models.base import DotProductScorer, ModelConfig, Recommender, ScoreFn
from recsys.models.registry import register


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    r"""Mean BPR loss :math:`-\frac{1}{B}\sum \ln \sigma(\hat{y}_{ui} - \hat{y}_{uj})`.

    ``neg_scores`` may have a trailing negatives dimension; each negative is one pair.
    """
    if neg_scores.dim() > pos_scores.dim():
        pos_scores = pos_scores.unsqueeze(-1)
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def bpr_example_losses(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    r"""Per-positive BPR loss :math:`[B]`: :math:`-\ln \sigma(\hat{y}_{ui} - \hat{y}_{uj})`,
    averaged over the trailing negatives dimension when there is one; its mean is
    :func:`bpr_loss`."""
    if neg_scores.dim() > pos_scores.dim():
        return -F.logsigmoid(pos_scores.unsqueeze(-1) - neg_scores).mean(-1)
    return -F.logsigmoid(pos_scores - neg_scores)


def l2_penalty(*embeddings: Tensor) -> Tensor:
    r""":math:`\frac{1}{2B}\sum_e \lVert e \rVert_2^2` over the batch's embedding rows."""
    batch = embeddings[0].shape[0]
    return sum(e.pow(2).sum() for e in embeddings) / (2 * batch)


class BPRConfig(ModelConfig):
    """Hyper-parameters of :class:`BPR`."""

    embedding_size: int = Field(64, gt=0)
    """Dimension :math:`d` of user and item embeddings."""
    reg_weight: float = Field(0.0, ge=0.0)
    """:math:`\\lambda`, L2 penalty on the batch's embeddings."""


@register
class BPR(DotProductScorer, Recommender):
    r"""BPR-MF from `"BPR: Bayesian Personalized Ranking from Implicit Feedback"
    <https://arxiv.org/abs/1205.2618>`_ (Rendle et al., UAI 2009).

    .. math::
        \hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i, \qquad
        \mathcal{L} = -\frac{1}{B}\sum_{(u,i,j)} \ln \sigma(\hat{y}_{ui} - \hat{y}_{uj})
        + \frac{\lambda}{2B} \sum_{(u,i,j)} \left(\lVert\mathbf{e}_u\rVert^2
        + \lVert\mathbf{e}_i\rVert^2 + \lVert\mathbf{e}_j\rVert^2\right)

    with :math:`j` a uniformly sampled item the user has not interacted with.
    Embeddings start from Xavier-normal initialisation (as RecBole's ``BPR``).

    Shapes:
        - loss: batch ``user`` :math:`[B]`, ``pos`` :math:`[B]`, ``neg`` :math:`[B]` or
          :math:`[B, n]`
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "bpr"
    config_class = BPRConfig
    batch_kind = "pairwise"
    supports_sparse_grad = True

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        d = self.config.embedding_size
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def id_embeddings(self) -> dict[str, str]:
        return {"user": "user_embedding", "item": "item_embedding"}

    def _triplets(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Positive scores ``[B]``, negative scores ``[B]`` or ``[B, n]``, and the reg terms."""
        users, pos_items, neg_items = batch["user"], batch["pos"], batch["neg"]
        u = self._lookup(self.user_embedding.weight, users)
        # one lookup for positives and negatives: the item table then gets one gradient (one
        # index_add, or one sparse tensor to coalesce) per step instead of two to be summed
        items = self._lookup(
            self.item_embedding.weight, torch.cat([pos_items, neg_items.reshape(-1)])
        )
        i, j = items[: len(pos_items)], items[len(pos_items) :].view(*neg_items.shape, -1)
        pos = (u * i).sum(-1)
        neg = (u.unsqueeze(-2) * j).sum(-1) if j.dim() == 3 else (u * j).sum(-1)
        reg = {}
        if self.config.reg_weight > 0:
            reg["reg"] = self.config.reg_weight * l2_penalty(u, i, j)
        return pos, neg, reg

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pos, neg, reg = self._triplets(batch)
        return {"bpr": bpr_loss(pos, neg), **reg}

    def example_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        r"""Per-triplet BPR loss :math:`-\ln\sigma(\hat{y}_{ui} - \hat{y}_{uj})` :math:`[B]`
        (averaged over the negatives of a positive), and the L2 term."""
        pos, neg, reg = self._triplets(batch)
        return bpr_example_losses(pos, neg), reg

    def _lookup(self, table: Tensor, index: Tensor) -> Tensor:
        if self.sparse_grad:
            return F.embedding(index, table, sparse=True)
        # index_select's backward (index_add) is cheaper on CPU than nn.Embedding's
        return table.index_select(0, index)

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        return self.scorer_from(self.representations())

    def representations(self) -> dict[str, Tensor]:
        return {"user": self.user_embedding.weight, "item": self.item_embedding.weight}
