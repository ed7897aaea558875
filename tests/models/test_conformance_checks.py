"""The conformance checks themselves: they pass correct models that the former checks failed
(dropout, a deterministic init) and fail faulty ones (a plain pydantic config, a bad default,
an export that drops a key, one negative only, a reset that keeps the weights), with a message
saying what the contract requires."""

from __future__ import annotations

import ast
import inspect

import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import Tensor, nn

from recsys.errors import ConfigError
from recsys.models.base import ModelConfig, Recommender, ScoreFn
from recsys.testing import MODEL_CHECKS, check_model, conformance, small_split
from recsys.testing.conformance import (
    check_config_class,
    check_loss_terms,
    check_reset_parameters_restores_init,
    check_score_shape_and_finite,
    check_scorer_from_representations,
    check_scores_in_float64,
    check_state_dict_round_trip,
)


@pytest.fixture(scope="module")
def split():
    return small_split()


class BiasConfig(ModelConfig):
    reg_weight: float = Field(0.0, ge=0.0)


class ItemBias(Recommender):
    """Learned item popularity logits, zero-initialised: a deterministic init."""

    name = "itembias"
    config_class = BiasConfig
    batch_kind = "pairwise"

    def build(self, train: sp.csr_array, dataset: object) -> None:
        self.bias = nn.Parameter(torch.zeros(self.n_items))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pos = self.bias[batch["pos"]]
        neg = self.bias[batch["neg"]]
        if neg.dim() == 2:  # train.n_negatives > 1
            pos = pos.unsqueeze(1)
        return {"bpr": -F.logsigmoid(pos - neg).mean()}

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        return lambda users: self.bias.unsqueeze(0).expand(len(users), -1).clone()


class DropoutConfig(ModelConfig):
    embedding_size: int = Field(8, gt=0)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)


class DropoutMF(Recommender):
    """Matrix factorisation with dropout on the user vector: correct, noisy in training."""

    name = "dropoutmf"
    config_class = DropoutConfig
    batch_kind = "pairwise"

    def build(self, train: sp.csr_array, dataset: object) -> None:
        d = self.config.embedding_size
        self.user = nn.Embedding(self.n_users, d)
        self.item = nn.Embedding(self.n_items, d)
        self.drop = nn.Dropout(self.config.dropout)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        u = self.drop(self.user(batch["user"]))
        pos = (u * self.item(batch["pos"])).sum(-1)
        neg_items = self.item(batch["neg"])
        if neg_items.dim() == 3:
            neg = (u.unsqueeze(1) * neg_items).sum(-1)
            pos = pos.unsqueeze(1)
        else:
            neg = (u * neg_items).sum(-1)
        return {"bpr": -F.logsigmoid(pos - neg).mean()}

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        return lambda users: self.drop(self.user(users)) @ self.item.weight.T


class PlainConfig(BaseModel):
    reg_weight: float = Field(0.0, ge=0.0)


class PlainCfg(ItemBias):
    config_class = PlainConfig  # type: ignore[assignment]


class BadDefaultConfig(ModelConfig):
    reg_weight: float = Field(-1.0, ge=0.0)


class BadDefault(ItemBias):
    config_class = BadDefaultConfig


class BadExport(ItemBias):
    """Its deployable state drops the only weight."""

    def export_state_dict(self) -> dict[str, Tensor]:
        state = self.state_dict()
        state.pop("bias")
        return state


class OneNegative(ItemBias):
    """Reads ``neg`` as ``[B]`` only."""

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        diff = self.bias[batch["pos"]] - self.bias[batch["neg"]].view(len(batch["pos"]))
        return {"bpr": -F.logsigmoid(diff).mean()}


class OneNegativeRefusing(OneNegative):
    """Reads ``neg`` as ``[B]`` only, and says so before training."""

    def check_train_config(self, train: object) -> None:
        if train.n_negatives > 1:
            raise ConfigError("train.n_negatives: one negative per positive only")


class NoReset(ItemBias):
    """Random init in ``build``, and a ``reset_parameters`` that does nothing."""

    def build(self, train: sp.csr_array, dataset: object) -> None:
        self.bias = nn.Parameter(torch.randn(self.n_items))

    def reset_parameters(self) -> None:
        pass


@pytest.mark.parametrize("model", [ItemBias, DropoutMF, OneNegativeRefusing])
def test_correct_models_pass_every_check(model, split):
    check_model(model, split)


@pytest.mark.parametrize(
    "check", [check_score_shape_and_finite, check_state_dict_round_trip, check_scores_in_float64]
)
def test_scoring_checks_use_eval_mode(check, split):
    check(DropoutMF, split)  # scored in training mode, dropout made these fail


def test_deterministic_init_passes_the_reset_check(split):
    check_reset_parameters_restores_init(ItemBias, split)


def test_a_reset_that_keeps_the_weights_fails(split):
    with pytest.raises(AssertionError, match="must re-initialise every trainable parameter.*bias"):
        check_reset_parameters_restores_init(NoReset, split)


@pytest.mark.parametrize(
    "model,text",
    [
        (PlainCfg, "config_class PlainConfig is not a subclass of recsys.models.base.ModelConfig"),
        (BadDefault, "the default reg_weight=-1.0 is invalid"),
    ],
)
def test_config_contract_is_checked(model, text, split):
    with pytest.raises(AssertionError, match="breaks the model contract") as info:
        check_config_class(model, split)
    assert text in str(info.value)


def test_the_exported_state_must_load_into_a_fresh_model(split):
    with pytest.raises(AssertionError, match=r"export_state_dict\(\) must load") as info:
        check_state_dict_round_trip(BadExport, split)
    assert "best.pt" in str(info.value) and '"bias"' in str(info.value)


def test_pairwise_losses_are_checked_with_several_negatives(split):
    with pytest.raises(AssertionError, match="n_negatives=2") as info:
        check_loss_terms(OneNegative, split)
    assert "check_train_config must refuse" in str(info.value)
    check_loss_terms(OneNegativeRefusing, split)  # refusing n_negatives > 1 is fine


def test_every_assert_in_the_checks_has_a_message():
    tree = ast.parse(inspect.getsource(conformance))
    bare = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert) and not node.msg]
    assert not bare, f"asserts without a message at lines {bare} of recsys/testing/conformance.py"


def test_every_check_is_listed_once():
    assert len({c.__name__ for c in MODEL_CHECKS}) == len(MODEL_CHECKS)
    assert MODEL_CHECKS[0] is check_config_class


class HistorySum(Recommender):
    """Folds users in: a user's vector is the sum of its history rows' item vectors, scored by
    the dot product."""

    name = "historysum"
    config_class = BiasConfig
    batch_kind = "none"
    fold_in = True

    def build(self, train: sp.csr_array, dataset: object) -> None:
        self.register_buffer("item", torch.randn(self.n_items, 4))

    def fit(self, train: sp.csr_array) -> None:
        pass

    def _users(self, history: sp.csr_array | None) -> Tensor:
        rows = self.train_matrix if history is None else history
        return torch.from_numpy(sp.csr_array(rows, dtype="float32").toarray()) @ self.item

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        users_r = self._users(history)
        return lambda users: users_r[users] @ self.item.T

    def representations(self, history: sp.csr_array | None = None) -> dict[str, Tensor]:
        return {"user": self._users(history), "item": self.item}

    def scorer_from(self, representations: dict[str, Tensor]) -> ScoreFn:
        users_r, items_r = representations["user"], representations["item"]
        return lambda users: users_r[users] @ items_r.T


class OldSignatureHistorySum(HistorySum):
    """The same model with ``representations()`` that takes no history."""

    def representations(self) -> dict[str, Tensor]:  # type: ignore[override]
        return super().representations()


def test_a_fold_in_model_must_take_history_in_representations(split):
    check_scorer_from_representations(HistorySum, split)
    with pytest.raises(AssertionError, match="must take the optional history rows"):
        check_scorer_from_representations(OldSignatureHistorySum, split)
