"""The :class:`Recommender` contract every model follows, built-in or plugin.

A model is a ``torch.nn.Module`` with

- ``name`` (its registry key) and ``config_class`` (a pydantic model with defaults, so the CLI
  and the tuner can list and set its hyper-parameters);
- ``batch_kind``: which sampler feeds :meth:`loss` (``"pairwise"``, ``"pairs"``,
  ``"user_rows"``, or ``"none"`` for closed-form models that only :meth:`fit`);
- :meth:`setup`: builds parameters for the data's shape, then :meth:`reset_parameters`;
- :meth:`loss` returning named terms (the trainer sums them and logs each);
- :meth:`score` for full ranking, and :meth:`scorer`, which returns a function of user indices
  with any shared work (graph propagation, item-tower passes) done once, explicitly;
- :meth:`representations`: named internal states for probes.

Construction only stores the config (scikit-learn's rule), so ``type(m)(m.config)`` gives a
fresh, unfitted copy with the same hyper-parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor, nn

from recsys.data.dataset import Dataset
from recsys.data.samplers import BatchKind
from recsys.errors import ConfigError, NotFittedError

ScoreFn = Callable[[Tensor], Tensor]


class ModelConfig(BaseModel):
    """Base of every model's hyper-parameter class: typed, validated, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def build_config(config_class: type[ModelConfig], values: dict[str, Any], prefix: str = "model"):
    """Validate ``values`` into ``config_class``; errors name the key (``model.embedding_size``)."""
    try:
        return config_class(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join([prefix, *(str(p) for p in err["loc"])])
            if err["type"] == "extra_forbidden":
                known = ", ".join(sorted(config_class.model_fields))
                problems.append(f"unknown key {key!r} (known: {known})")
            else:
                problems.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("; ".join(problems)) from None


class Recommender(nn.Module):
    """Base class of all models. See the module docstring for the contract."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    batch_kind: ClassVar[BatchKind] = "pairwise"
    supports_sparse_grad: ClassVar[bool] = False
    """Whether :meth:`loss` can produce row-sparse embedding gradients (``sparse_grad``)."""

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

    # -- training ---------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named loss terms for one batch of the declared ``batch_kind``."""
        raise NotImplementedError(f"{type(self).__name__} has no loss (batch kind 'none')")

    # -- scoring ----------------------------------------------------------------------------
    def score(self, users: Tensor, history: sp.csr_array | None = None) -> Tensor:
        """Scores of all items for ``users``: ``[len(users), n_items]``.

        ``history`` (optional) is a CSR matrix whose rows are the users' known items, for
        models that score from a history (fold-in); by default the training rows are used.
        """
        return self.scorer(history)(users)

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        """A function ``users -> scores`` with shared work done once, for evaluation."""
        raise NotImplementedError

    def representations(self) -> dict[str, Tensor]:
        """Named internal states (e.g. ``user``, ``item`` embeddings) for probes.

        Each tensor has one row per user or per item (the name says which); the ones that the
        scores are computed from are the sites :meth:`scorer_from` accepts.
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
