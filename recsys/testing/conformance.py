"""Common checks every :class:`~recsys.models.base.Recommender` must pass.

Like scikit-learn's ``parametrize_with_checks``: the core's test suite runs every check on every
registered model, and a plugin's suite can do the same for its own models::

    @pytest.mark.parametrize("check", MODEL_CHECKS, ids=lambda c: c.__name__)
    def test_conformance(check, planted_split):
        check(MyModel, planted_split)
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch

from recsys.data.samplers import make_sampler
from recsys.data.split import Split
from recsys.errors import NotFittedError
from recsys.models.base import Recommender


def _fitted(cls: type[Recommender], split: Split, seed: int = 0) -> Recommender:
    torch.manual_seed(seed)
    model = cls().setup(split.train)
    if cls.batch_kind == "none":
        model.fit(split.train)
    return model


def check_default_construction(cls: type[Recommender], split: Split) -> None:
    """Constructs from defaults, stores only its config, and is not set up yet."""
    model = cls()
    assert isinstance(model.config, cls.config_class)
    assert not model.is_fitted()
    again = cls(cls.config_class(**model.config.model_dump()))
    assert again.config == model.config
    assert repr(model).startswith(cls.__name__ + "(")


def check_unfitted_model_raises(cls: type[Recommender], split: Split) -> None:
    try:
        cls().scorer()
    except NotFittedError:
        return
    raise AssertionError(f"{cls.__name__}.scorer() before setup() must raise NotFittedError")


def check_score_shape_and_finite(cls: type[Recommender], split: Split) -> None:
    model = _fitted(cls, split)
    users = torch.arange(min(7, split.shape[0]))
    scores = model.score(users)
    assert scores.shape == (len(users), split.shape[1])
    assert torch.isfinite(scores).all()
    fn = model.scorer()
    assert torch.allclose(fn(users), scores)


def check_loss_terms(cls: type[Recommender], split: Split) -> None:
    """Named scalar terms with gradients reaching the parameters."""
    if cls.batch_kind == "none":
        return
    model = _fitted(cls, split)
    sampler = make_sampler(cls.batch_kind, split.train, 32)
    batch = next(sampler.epoch(np.random.default_rng(0)))
    terms = model.loss(batch)
    assert terms and all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def check_reset_parameters_changes_weights(cls: type[Recommender], split: Split) -> None:
    model = _fitted(cls, split)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return
    before = [p.detach().clone() for p in params]
    model.reset_parameters()
    assert any(not torch.equal(a, p) for a, p in zip(before, params, strict=True))


def check_state_dict_round_trip(cls: type[Recommender], split: Split) -> None:
    """Saved weights load into a fresh model of the same config and score identically."""
    model = _fitted(cls, split, seed=1)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = cls(model.config).setup(split.train)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    users = torch.arange(min(5, split.shape[0]))
    assert torch.allclose(model.score(users), fresh.score(users))


def check_scorer_from_representations(cls: type[Recommender], split: Split) -> None:
    """Where a model scores from its representations, unedited ones reproduce its scores."""
    model = _fitted(cls, split)
    users = torch.arange(min(5, split.shape[0]))
    try:
        fn = model.scorer_from(model.representations())
    except NotImplementedError:
        return
    assert torch.allclose(fn(users), model.score(users), atol=1e-5)


def check_scores_in_float64(cls: type[Recommender], split: Split) -> None:
    """After ``model.double()`` the model scores (from its training rows, and from another
    history when it folds users in) and computes its loss in float64, as in float32: inputs
    the model makes itself (history rows, batches, step embeddings) follow its dtype."""
    model = _fitted(cls, split)
    users = torch.arange(min(5, split.shape[0]))
    expected = model.score(users)
    model.double()
    scores = model.score(users)
    assert scores.dtype == torch.float64
    torch.testing.assert_close(scores.float(), expected, atol=1e-4, rtol=1e-4)
    if model.fold_in:
        assert model.score(users, history=split.train).dtype == torch.float64
    if cls.batch_kind != "none":
        sampler = make_sampler(cls.batch_kind, split.train, 32)
        model.train()
        terms = model.loss(next(sampler.epoch(np.random.default_rng(0))))
        assert all(t.dtype == torch.float64 and torch.isfinite(t) for t in terms.values())


MODEL_CHECKS: list[Callable[[type[Recommender], Split], None]] = [
    check_default_construction,
    check_unfitted_model_raises,
    check_score_shape_and_finite,
    check_loss_terms,
    check_reset_parameters_changes_weights,
    check_state_dict_round_trip,
    check_scorer_from_representations,
    check_scores_in_float64,
]


def check_model(cls: type[Recommender], split: Split) -> None:
    """Run every check in :data:`MODEL_CHECKS`."""
    for check in MODEL_CHECKS:
        check(cls, split)
