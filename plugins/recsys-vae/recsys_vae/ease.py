r"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019), in closed form."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import Tensor

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError
from recsys.models.base import ModelConfig, Recommender, ScoreFn, history_rows

__all__ = ["EASE", "EASEConfig"]

_BYTES_PER_CELL = 8 * 3  # float64 Gram matrix, its inverse, and the float32 result with slack


class EASEConfig(ModelConfig):
    """Hyper-parameters of :class:`EASE`."""

    l2: float = Field(500.0, gt=0.0)
    r"""The ridge penalty :math:`\lambda` (500 in the paper for ML-20M)."""
    memory_mb: float = Field(4096.0, gt=0.0)
    """Memory budget of the dense item-by-item solve; a larger catalogue is refused."""


class EASE(Recommender):
    r"""EASE (Steck, `WWW 2019 <https://arxiv.org/abs/1905.03375>`_): a linear item-item model
    with a zero diagonal, fitted in closed form.

    .. math::
        \hat{B} = \arg\min_B \lVert X - XB \rVert_F^2 + \lambda \lVert B \rVert_F^2
            \quad \text{s.t.}\ \operatorname{diag}(B) = 0,
        \qquad
        P = (X^\top X + \lambda I)^{-1}, \quad \hat{B}_{ij} = -\frac{P_{ij}}{P_{jj}}\ (i \ne j)

    and the scores of a user are :math:`\mathbf{x}_u \hat{B}` for the user's history row
    :math:`\mathbf{x}_u` (fold-in: any user with a history can be scored). The solve is dense,
    :math:`O(|\mathcal{I}|^3)` time and about ``24 |I|^2`` bytes; a catalogue that needs more
    than ``memory_mb`` is an error naming the option.

    Args:
        config (EASEConfig): ``l2`` (:math:`\lambda`) and ``memory_mb``.

    Shapes:
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "ease"
    config_class = EASEConfig
    batch_kind = "none"
    fold_in = True

    @staticmethod
    def memory_needed_mb(n_items: int) -> float:
        """Megabytes the dense solve needs for ``n_items`` items."""
        return _BYTES_PER_CELL * float(n_items) ** 2 / 2**20

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        need = self.memory_needed_mb(self.n_items)
        if need > self.config.memory_mb:
            raise ConfigError(
                f"ease: {self.n_items} items need about {need:.3g} MB for the dense item-by-item "
                f"solve, over model.memory_mb={self.config.memory_mb:g}; raise model.memory_mb "
                "or filter rare items (data.min_item_interactions)"
            )
        self.register_buffer("weights", torch.zeros(self.n_items, self.n_items))

    def fit(self, train: sp.csr_array) -> None:
        self.check_fit_input(train)
        x = sp.csr_array(train, dtype=np.float64)
        gram = torch.from_numpy((x.T @ x).toarray())
        gram.diagonal().add_(self.config.l2)
        # X^T X + lambda I is symmetric positive definite: a Cholesky factor gives the inverse
        p = torch.cholesky_inverse(torch.linalg.cholesky(gram))
        del gram
        b = p / (-p.diagonal()).unsqueeze(0)
        b.diagonal().zero_()
        self.weights.copy_(b.to(self.weights))

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        history = self.history_matrix(history)
        weights = self.weights

        def score(users: Tensor) -> Tensor:
            # float32 rows; the weights' dtype if the model was cast (model.double())
            return history_rows(history, users, weights.device).to(weights.dtype) @ weights

        return score

    def representations(self, history: sp.csr_array | None = None) -> dict[str, Tensor]:
        """``item_weights``: row :math:`j` holds :math:`\\hat{B}_{j\\cdot}`, how item ``j`` in a
        history votes for every item."""
        return {"item_weights": self.weights}
