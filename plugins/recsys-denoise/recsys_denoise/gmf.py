r"""GMF, the pointwise base model of the ADT paper's experiments.

Generalised matrix factorisation from `"Neural Collaborative Filtering"
<https://arxiv.org/abs/1708.05031>`_ (He et al., WWW 2017), trained as Wang et al. (WSDM 2021,
`arXiv:2006.04153 <https://arxiv.org/abs/2006.04153>`_) train it for T-CE and R-CE: binary
cross-entropy on every training interaction (label 1) and uniformly sampled
non-interacted items (label 0; ``train.n_negatives`` per interaction, one by default as in the
paper), redrawn each epoch (the ``pointwise`` batch kind). Wrapped by
:class:`~recsys_denoise.TCE` or :class:`~recsys_denoise.RCE` (``model.base=gmf``), it gives the
paper's setting.
"""

from __future__ import annotations

import scipy.sparse as sp
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from recsys.data.dataset import Dataset
from recsys.models.base import ModelConfig, Recommender, ScoreFn

__all__ = ["GMF", "GMFConfig"]


class GMFConfig(ModelConfig):
    """Hyper-parameters of :class:`GMF`."""

    embedding_size: int = Field(32, gt=0)
    """Dimension :math:`d` of the user and item embeddings (the ADT authors' 32 factors)."""


class GMF(Recommender):
    r"""GMF from `"Neural Collaborative Filtering" <https://arxiv.org/abs/1708.05031>`_
    (He et al., WWW 2017), trained with pointwise binary cross-entropy.

    .. math::
        \hat{y}_{ui} = \mathbf{h}^\top(\mathbf{p}_u \odot \mathbf{q}_i) + b,\qquad
        \mathcal{L} = -\frac{1}{B}\sum_{(u,i,y)} \big[y\ln\sigma(\hat{y}_{ui})
            + (1-y)\ln(1-\sigma(\hat{y}_{ui}))\big]

    over a batch of training interactions (:math:`y = 1`) and sampled non-interacted items
    (:math:`y = 0`, ``train.n_negatives`` per interaction). :math:`\hat{y}_{ui}` is a logit and
    is also the score. Initialisation as in the NCF code the authors build on: embeddings
    :math:`\mathcal{N}(0, 0.01^2)`, :math:`\mathbf{h}` Kaiming-uniform for a sigmoid output,
    :math:`b = 0`. No weight penalty (the authors use none).

    Its per-example losses are the per-example BCE terms, so :class:`~recsys_denoise.TCE`
    truncates positives only and :class:`~recsys_denoise.RCE` weights positives by
    :math:`\sigma(\hat{y})^\beta` and negatives by :math:`(1-\sigma(\hat{y}))^\beta`.

    Args:
        config (GMFConfig): the embedding size.

    Shapes:
        - loss: batch ``user``, ``item`` :math:`[B]` (int64), ``label`` :math:`[B]` (0/1)
          -> the scalar term ``bce``
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "gmf"
    config_class = GMFConfig
    batch_kind = "pointwise"

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        d = self.config.embedding_size
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)
        self.output = nn.Linear(d, 1)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.user_embedding.weight, std=0.01)
        nn.init.normal_(self.item_embedding.weight, std=0.01)
        nn.init.kaiming_uniform_(self.output.weight, a=1, nonlinearity="sigmoid")
        nn.init.zeros_(self.output.bias)

    # -- training ---------------------------------------------------------------------------
    def logits(self, users: Tensor, items: Tensor) -> Tensor:
        r""":math:`\hat{y}_{ui}` ``[B]`` for the pairs ``(users[b], items[b])``."""
        product = self.user_embedding(users) * self.item_embedding(items)
        return self.output(product).squeeze(-1)

    def example_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        r"""Per-example BCE :math:`[B]`, positives and negatives alike
        (:math:`-\ln\sigma(\hat{y})` for a positive, :math:`-\ln(1-\sigma(\hat{y}))` for a
        negative), and no regularisation term."""
        logits = self.logits(batch["user"], batch["item"])
        labels = batch["label"].to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="none"), {}

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        losses, _ = self.example_losses(batch)
        return {"bce": losses.mean()}

    # -- scoring ----------------------------------------------------------------------------
    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        return self.scorer_from(self.representations())

    def representations(self) -> dict[str, Tensor]:
        self.check_fitted()
        return {"user": self.user_embedding.weight, "item": self.item_embedding.weight}

    def scorer_from(self, representations: dict[str, Tensor]) -> ScoreFn:
        r"""Scores :math:`(\mathbf{p}_u \odot \mathbf{h})^\top \mathbf{q}_i + b` from (possibly
        edited) ``user`` and ``item`` embeddings."""
        users_r, items_r = representations["user"], representations["item"]
        weight, bias = self.output.weight.squeeze(0), self.output.bias

        def score(users: Tensor) -> Tensor:
            u = users_r.index_select(0, users.to(users_r.device))
            return (u * weight) @ items_r.T + bias

        return score
