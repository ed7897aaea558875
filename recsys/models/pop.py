"""Most-popular baseline."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from recsys.data.dataset import Dataset
from recsys.models.base import ModelConfig, Recommender, ScoreFn
from recsys.models.registry import register


class PopConfig(ModelConfig):
    """Pop has no hyper-parameters."""


@register
class Pop(Recommender):
    r"""Most-popular: every user gets the items with the most training interactions.

    .. math::
        \hat{y}_{ui} = |\{v : (v, i) \in \mathcal{R}_{\text{train}}\}|

    Shapes:
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "pop"
    config_class = PopConfig
    batch_kind = "none"
    fold_in = True  # the same scores for every user

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        self.register_buffer("item_count", torch.zeros(self.n_items))

    def fit(self, train: sp.csr_array) -> None:
        self.check_fit_input(train)
        counts = np.bincount(train.indices, minlength=self.n_items).astype(np.float32)
        self.item_count.copy_(torch.from_numpy(counts))

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()

        def score(users: Tensor) -> Tensor:
            return self.item_count.unsqueeze(0).expand(len(users), -1).clone()

        return score

    def representations(self, history: sp.csr_array | None = None) -> dict[str, Tensor]:
        return {"item_popularity": self.item_count.unsqueeze(1)}
