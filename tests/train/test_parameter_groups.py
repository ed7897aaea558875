"""Models with parameter groups (``Recommender.parameter_groups``): the trainer's optimiser
gives each group its own options, and a model whose groups break the contract is refused
with the method named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.data.samplers import make_sampler
from recsys.errors import ConfigError
from recsys.models.bpr import BPR
from recsys.testing import small_split
from recsys.train.trainer import TrainConfig, make_optimizer, train_step


class TwoRateBPR(BPR):
    """BPR-MF whose item table learns at its own rate (groups set per test)."""

    name = "two-rate-bpr"
    groups: object = None

    def parameter_groups(self):
        return self.groups(self) if self.groups else None


def _model(groups) -> TwoRateBPR:
    torch.manual_seed(0)
    model = TwoRateBPR(embedding_size=8).setup(small_split().train)
    model.groups = groups
    return model


def test_each_group_steps_at_its_own_learning_rate():
    model = _model(
        lambda m: [
            {"params": [m.user_embedding.weight]},
            {"params": [m.item_embedding.weight], "lr": 1e-4},
        ]
    )
    optimizer = make_optimizer(model, TrainConfig(learning_rate=1e-2))
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2, 1e-4]
    before = [
        p.detach().clone() for p in (model.user_embedding.weight, model.item_embedding.weight)
    ]
    split = small_split()
    batch = next(make_sampler(model.batch_kind, split.train, 256).epoch(np.random.default_rng(0)))
    train_step(model, optimizer, batch)
    # Adam's first step moves every entry with a gradient by about its group's rate
    for param, old, rate in zip(
        (model.user_embedding.weight, model.item_embedding.weight),
        before,
        (1e-2, 1e-4),
        strict=True,
    ):
        moved = (param.detach() - old).abs()
        assert moved.max().item() == pytest.approx(rate, rel=1e-3)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (lambda m: [{"params": [m.user_embedding.weight]}], "in no group: item_embedding.weight"),
        (
            lambda m: [{"params": list(m.parameters())}, {"params": [m.item_embedding.weight]}],
            "twice in group 1 or also in an earlier one",
        ),
        (lambda m: [{"params": list(m.parameters()), "momentum": 0.9}], "options ['momentum']"),
        (lambda m: [{"params": list(m.parameters()), "lr": float("nan")}], "lr=nan"),
        (lambda m: [{"params": list(m.parameters()), "lr": "fast"}], "lr='fast'"),
        (lambda m: [{"lr": 1e-3}], "group 0 needs 'params'"),
        (lambda m: [{"params": m.user_embedding.weight}], "group 0 needs 'params'"),
        (
            lambda m: [{"params": [m.user_embedding.weight, *m.parameters()]}],
            "twice in group 0",
        ),
    ],
)
def test_groups_that_break_the_contract_are_refused(groups, message):
    with pytest.raises(ConfigError, match=r"TwoRateBPR\.parameter_groups\(\)") as error:
        make_optimizer(_model(groups), TrainConfig())
    assert message in str(error.value)


def test_sparse_adam_refuses_a_groups_weight_decay():
    # lazy Adam has no weight decay: a group's would be ignored silently
    model = _model(lambda m: [{"params": list(m.parameters()), "weight_decay": 0.5}])
    with pytest.raises(ConfigError, match=r"sparse_adam does not support weight decay"):
        make_optimizer(model, TrainConfig(optimizer="sparse_adam"))
