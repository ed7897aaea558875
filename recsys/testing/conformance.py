"""Common checks every :class:`~recsys.models.base.Recommender` must pass.

Like scikit-learn's ``parametrize_with_checks``: the core's test suite
(``tests/models/test_conformance.py``) runs every check on every registered model, built-in
and plugin, and a plugin's suite can do the same for its own models, on the small split that
:func:`small_split` makes::

    import pytest

    from recsys.testing import MODEL_CHECKS, small_split


    @pytest.mark.parametrize("check", MODEL_CHECKS, ids=lambda c: c.__name__)
    def test_conformance(check):
        check(MyModel, small_split())

Each check takes the model class and a split, and raises :class:`AssertionError` with a message
saying what the contract requires (see :mod:`recsys.models.base`). The checks score a model the
way the trainer does: set up (and fitted, for closed-form models) under a fixed torch seed,
then switched to eval mode; losses are computed in training mode.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from recsys.data.samplers import Batch, make_sampler
from recsys.data.split import Split, split_ratio
from recsys.data.synthetic import make_synthetic
from recsys.errors import ConfigError, DataError, NotFittedError
from recsys.models.base import Recommender


def small_split(seed: int = 7) -> Split:
    """A small planted-factor split for the checks: 300 users x 200 items, 9000 interactions
    (power-law item popularity, item features of every modality), split 80/10/10 per user.
    Takes milliseconds; ``seed`` draws another data set of the same shape."""
    data = make_synthetic(300, 200, 9000, temperature=0.25, seed=seed)
    return split_ratio(data, (0.8, 0.1, 0.1), seed=1)


def _fitted(cls: type[Recommender], split: Split, seed: int = 0) -> Recommender:
    """A model set up on ``split.train`` under torch seed ``seed`` (and fitted, for a
    closed-form model), in eval mode: as the trainer leaves it for scoring."""
    torch.manual_seed(seed)
    model = cls().setup(split.train)
    if model.batch_kind == "none":
        model.fit(split.train)
    model.eval()
    return model


def _first_batch(model: Recommender, split: Split, **options: int) -> Batch:
    sampler = make_sampler(model.batch_kind, split.train, 32, **options)
    return next(sampler.epoch(np.random.default_rng(0)))


def _refuses_n_negatives(model: Recommender, n: int) -> bool:
    """Whether the model's :meth:`~Recommender.check_train_config` refuses
    ``train.n_negatives=n`` (and not the default training settings)."""
    from recsys.train.trainer import TrainConfig

    try:
        model.check_train_config(TrainConfig())
    except ConfigError:
        return False  # refuses something else: the check says nothing about negatives
    try:
        model.check_train_config(TrainConfig(n_negatives=n))
    except ConfigError:
        return True
    return False


def check_config_class(cls: type[Recommender], split: Split) -> None:
    """The class-level contract the registry enforces when it loads a plugin: ``config_class``
    subclasses :class:`~recsys.models.base.ModelConfig` and builds from its defaults alone, and
    ``batch_kind`` is one the trainer knows."""
    from recsys.models.registry import contract_problems

    problems = contract_problems(cls)
    assert not problems, (
        f"{cls.__name__} breaks the model contract (the registry would refuse it as a plugin): "
        + "; ".join(problems)
    )


def check_default_construction(cls: type[Recommender], split: Split) -> None:
    """Constructs from defaults, stores only its config, and is not set up yet."""
    model = cls()
    assert isinstance(model.config, cls.config_class), (
        f"{cls.__name__}().config must be an instance of its config_class "
        f"{cls.config_class.__name__}, got {type(model.config).__name__}"
    )
    assert not model.is_fitted(), (
        f"{cls.__name__}() must not be set up: construction only stores the config "
        "(is_fitted() must be False before setup())"
    )
    again = cls(cls.config_class(**model.config.model_dump()))
    assert again.config == model.config, (
        f"{cls.__name__}(config_class(**config.model_dump())) must have the same config: "
        "the config must round-trip through model_dump()"
    )
    assert repr(model).startswith(cls.__name__ + "("), (
        f"repr() of a {cls.__name__} must start with {cls.__name__ + '('!r}, got {model!r}"
    )


def check_unfitted_model_raises(cls: type[Recommender], split: Split) -> None:
    """Scoring a model that is not set up raises :class:`NotFittedError`."""
    try:
        cls().scorer()
    except NotFittedError:
        return
    raise AssertionError(f"{cls.__name__}.scorer() before setup() must raise NotFittedError")


def check_score_shape_and_finite(cls: type[Recommender], split: Split) -> None:
    """In eval mode, ``score`` gives finite ``[users, n_items]`` scores, and the same as the
    function ``scorer()`` returns."""
    model = _fitted(cls, split)
    users = torch.arange(min(7, split.shape[0]))
    scores = model.score(users)
    expected = (len(users), split.shape[1])
    assert scores.shape == expected, (
        f"{cls.__name__}.score(users) must have shape [len(users), n_items] = {expected}, "
        f"got {tuple(scores.shape)}"
    )
    assert torch.isfinite(scores).all(), (
        f"{cls.__name__}.score(users) must be finite; got NaN or infinite scores"
    )
    fn = model.scorer()
    assert torch.allclose(fn(users), scores), (
        f"{cls.__name__}: scorer()(users) must equal score(users) in eval mode (scoring must "
        "be deterministic there: dropout and other training noise off)"
    )


def _check_terms(cls: type[Recommender], terms: dict[str, Tensor], what: str) -> None:
    assert isinstance(terms, dict) and terms, (
        f"{cls.__name__}.loss({what}) must return a non-empty dict of named loss terms"
    )
    for name, term in terms.items():
        assert isinstance(term, Tensor) and term.dim() == 0, (
            f"{cls.__name__}.loss({what}): term {name!r} must be a scalar tensor, got "
            f"{tuple(term.shape) if isinstance(term, Tensor) else type(term).__name__}"
        )
        assert torch.isfinite(term), (
            f"{cls.__name__}.loss({what}): term {name!r} must be finite, got {float(term)}"
        )


def check_loss_terms(cls: type[Recommender], split: Split) -> None:
    """Named scalar terms with gradients reaching the parameters, in training mode; for a
    pairwise model also with ``train.n_negatives=2`` (``neg`` of shape ``[B, 2]``), unless
    its ``check_train_config`` refuses several negatives."""
    torch.manual_seed(0)
    model = cls().setup(split.train)
    if model.batch_kind == "none":
        return
    options: list[dict[str, int]] = [{}]
    if model.batch_kind == "pairwise" and not _refuses_n_negatives(model, 2):
        options.append({"n_negatives": 2})
    for option in options:
        what = f"a {model.batch_kind} batch" + (
            f" with n_negatives={option['n_negatives']}" if option else ""
        )
        model.zero_grad(set_to_none=True)
        model.train()
        batch = _first_batch(model, split, **option)
        if not option:
            terms = model.loss(batch)
        else:
            try:
                terms = model.loss(batch)
            except Exception as exc:
                raise AssertionError(
                    f"{cls.__name__}.loss({what}) raised {type(exc).__name__}: {exc}. A pairwise "
                    "batch's neg is [B, n] with train.n_negatives=n > 1: the loss must handle "
                    "it, or check_train_config must refuse n_negatives > 1 (a ConfigError)"
                ) from exc
        _check_terms(cls, terms, what)
        sum(terms.values()).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), (
            f"{cls.__name__}.loss({what}): the summed terms must give a non-zero gradient to "
            "at least one parameter"
        )


def check_reset_parameters_restores_init(cls: type[Recommender], split: Split) -> None:
    """``reset_parameters`` re-initialises every trainable parameter: after the weights moved
    (as training moves them), a reset under the same torch seed gives exactly the weights a
    reset of the freshly set-up model gave. (A deterministic init, such as zero biases, is
    fine; a parameter the reset leaves as it was is not.)"""
    model = _fitted(cls, split)
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        return
    torch.manual_seed(1234)
    model.reset_parameters()
    initial = {name: p.detach().clone() for name, p in params.items()}
    with torch.no_grad():  # move every weight away from its initial value
        for p in params.values():
            p.add_(torch.rand_like(p) + 0.5)
    torch.manual_seed(1234)
    model.reset_parameters()
    kept = [name for name, p in params.items() if not torch.equal(p.detach(), initial[name])]
    assert not kept, (
        f"{cls.__name__}.reset_parameters() must re-initialise every trainable parameter (a "
        "reset after training must give what a reset of a fresh model under the same torch "
        f"seed gives); these kept other values: {', '.join(kept)}"
    )


check_reset_parameters_changes_weights = check_reset_parameters_restores_init
"""The former name of :func:`check_reset_parameters_restores_init`."""


def _round_trip(state: dict[str, Tensor]) -> dict[str, object]:
    """``state`` written and read back as a checkpoint is (``torch.save``, weights-only
    ``torch.load``)."""
    buf = io.BytesIO()
    torch.save({"model": state}, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def check_state_dict_round_trip(cls: type[Recommender], split: Split) -> None:
    """Saved weights load into a freshly set-up model of the same config and score
    identically in eval mode: the training state (``state_dict()``, ``last.pt``, resume) and
    the deployable one (``export_state_dict()``, ``best.pt``, loaded by ``recsys evaluate``,
    ``recommend`` and the end of training), each through the loader the trainer uses."""
    from recsys.train.checkpoint import load_weights

    model = _fitted(cls, split, seed=1)
    users = torch.arange(min(5, split.shape[0]))
    expected = model.score(users)
    for method, file in (("state_dict", "last.pt"), ("export_state_dict", "best.pt")):
        state = _round_trip(getattr(model, method)())
        torch.manual_seed(2)  # another init: the weights must come from the file
        fresh = cls(model.config).setup(split.train)
        try:
            load_weights(fresh, state, Path(file))
        except DataError as exc:  # the reason is load_state_dict's error
            reason = " ".join(str(exc.__cause__ or exc).split())
            raise AssertionError(
                f"{cls.__name__}.{method}() must load (load_state_dict) into a freshly set-up "
                f"model of the same config, as {file} is loaded: {reason}"
            ) from exc
        fresh.eval()
        assert torch.allclose(expected, fresh.score(users)), (
            f"{cls.__name__}: a fresh model loaded from {method}() ({file}) must score as the "
            "model that saved it (in eval mode)"
        )


def check_scorer_from_representations(cls: type[Recommender], split: Split) -> None:
    """Where a model scores from its representations, unedited ones reproduce its scores."""
    model = _fitted(cls, split)
    users = torch.arange(min(5, split.shape[0]))
    try:
        fn = model.scorer_from(model.representations())
    except NotImplementedError:
        return
    assert torch.allclose(fn(users), model.score(users), atol=1e-5), (
        f"{cls.__name__}.scorer_from(representations()) must reproduce score() (atol 1e-5): "
        "unedited representations give the model's own scores"
    )
    if model.fold_in:
        # users known by other rows (held-out users' fold-in rows): probes and exports pass
        # those rows to representations(history), as the trainer passes them to scorer()
        other = sp.csr_array(split.train + split.valid)
        try:
            fn = model.scorer_from(model.representations(other))
        except TypeError as exc:
            raise AssertionError(
                f"{cls.__name__} folds in (fold_in), so representations() must take the "
                f"optional history rows that scorer() takes: {exc}"
            ) from None
        assert torch.allclose(fn(users), model.score(users, other), atol=1e-5), (
            f"{cls.__name__}.scorer_from(representations(history)) must reproduce "
            "score(users, history) (atol 1e-5)"
        )


def check_scores_in_float64(cls: type[Recommender], split: Split) -> None:
    """After ``model.double()`` the model scores (from its training rows, and from another
    history when it folds users in) and computes its loss in float64, as in float32: inputs
    the model makes itself (history rows, batches, step embeddings) follow its dtype."""
    model = _fitted(cls, split)
    users = torch.arange(min(5, split.shape[0]))
    expected = model.score(users)
    model.double()
    scores = model.score(users)
    assert scores.dtype == torch.float64, (
        f"{cls.__name__}: after model.double(), score() must return float64, got {scores.dtype}"
    )
    try:
        torch.testing.assert_close(scores.float(), expected, atol=1e-4, rtol=1e-4)
    except AssertionError as exc:
        raise AssertionError(
            f"{cls.__name__}: scores in float64 must match the float32 ones (atol and rtol "
            f"1e-4): {exc}"
        ) from None
    if model.fold_in:
        dtype = model.score(users, history=split.train).dtype
        assert dtype == torch.float64, (
            f"{cls.__name__}: after model.double(), score(users, history=...) must return "
            f"float64, got {dtype}"
        )
    if model.batch_kind != "none":
        model.train()
        terms = model.loss(_first_batch(model, split))
        for name, term in terms.items():
            assert term.dtype == torch.float64 and torch.isfinite(term), (
                f"{cls.__name__}: after model.double(), loss term {name!r} must be a finite "
                f"float64, got {term.dtype} {term.detach().tolist()}"
            )


MODEL_CHECKS: list[Callable[[type[Recommender], Split], None]] = [
    check_config_class,
    check_default_construction,
    check_unfitted_model_raises,
    check_score_shape_and_finite,
    check_loss_terms,
    check_reset_parameters_restores_init,
    check_state_dict_round_trip,
    check_scorer_from_representations,
    check_scores_in_float64,
]


def check_model(cls: type[Recommender], split: Split | None = None) -> None:
    """Run every check in :data:`MODEL_CHECKS` (on :func:`small_split` by default)."""
    split = small_split() if split is None else split
    for check in MODEL_CHECKS:
        check(cls, split)
