"""DiffRec and L-DiffRec: conformance, learning, checkpoints and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recsys_diffusion import DiffRec, DiffRecStudent, LDiffRec

from recsys.data.split import split_ratio
from recsys.data.synthetic import make_synthetic
from recsys.errors import ConfigError
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model, get_model_class
from recsys.testing import MODEL_CHECKS
from recsys.train.trainer import TrainConfig, Trainer

SMALL = {"hidden_dims": [32], "emb_size": 4}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("data-cache")))
    monkeypatch.delenv("RECSYS_TRACKING_URI", raising=False)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def planted_split():
    data = make_synthetic(300, 200, 9000, temperature=0.25, seed=7)
    return split_ratio(data, (0.8, 0.1, 0.1), seed=1)


def _config(**overrides) -> TrainConfig:
    values = {
        "epochs": 4,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "progress": False,
        "valid_metric": "recall_at_20",
        "seed": 3,
    }
    return TrainConfig(**{**values, **overrides})


def test_models_are_registered_by_entry_point():
    assert get_model_class("diffrec") is DiffRec
    assert get_model_class("ldiffrec") is LDiffRec
    assert get_model_class("diffrec_student") is DiffRecStudent


@pytest.mark.parametrize("check", MODEL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", ["diffrec", "ldiffrec", "diffrec_student"])
def test_conformance(name, check, planted_split):
    check(get_model_class(name), planted_split)


def test_bad_schedule_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="noise_min"):
        create_model("diffrec", noise_min=0.1, noise_max=0.01)
    with pytest.raises(ConfigError, match="model.steps"):
        create_model("diffrec", steps=0)


def test_reverse_calls_the_denoiser_t_times_and_returns_its_last_output(planted_split):
    model = DiffRec(steps=4, noise_scale=0.0, **SMALL).setup(planted_split.train)
    calls = []
    forward = model.denoiser.forward

    def counting(x, t, drop=None, input_weight_t=None):
        calls.append(int(t[0]))
        return forward(x, t, drop, input_weight_t)

    model.denoiser.forward = counting
    x = torch.rand(3, 200)
    out = model.reverse(x)
    assert calls == [3, 2, 1, 0]
    # with no noise every posterior mean is x0_hat itself: T applications of the network
    expected = x
    for t in (3, 2, 1, 0):
        expected = forward(expected, torch.full((3,), t), False)
    assert torch.allclose(out, expected)
    calls.clear()
    model.reverse(x, n_calls=1)
    assert calls == [3]


def test_diffrec_learns_the_planted_structure(planted_split):
    evaluator = Evaluator(topk=[20])
    pop = create_model("pop")
    pop_metrics = Trainer(pop, planted_split, _config(), evaluator).fit().best_valid
    model = DiffRec(hidden_dims=[64])
    fit = Trainer(model, planted_split, _config(epochs=15), evaluator).fit()
    assert fit.history[-1]["loss"] < fit.history[0]["loss"]
    assert fit.best_valid["recall_at_20"] > pop_metrics["recall_at_20"] + 0.02
    # the importance sampler warmed up and its state is in the checkpointed buffers
    state = model.state_dict()
    assert int(state["sampler.loss_count"].min()) == 10


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("diffrec", SMALL),
        ("ldiffrec", {"hidden_dims": [16], "latent_size": 24, "emb_size": 4}),
    ],
)
def test_resume_is_exact(name, params, planted_split, tmp_path):
    """Two epochs, stop, two more from last.pt == four uninterrupted (sampler state, RNG)."""

    def fit(epochs: int, folder: str, resume: bool = False) -> None:
        model = create_model(name, **params)
        cfg = _config(epochs=epochs, eval_every=10)
        Trainer(model, planted_split, cfg, checkpoint_dir=tmp_path / folder).fit(resume=resume)

    fit(4, "a")
    fit(2, "b")
    fit(4, "b", resume=True)
    # the final training states (a trained model is its best validation epoch)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_round_trip_keeps_sampler_state(planted_split):
    model = DiffRec(**SMALL).setup(planted_split.train)
    model.train()
    rows = torch.from_numpy(planted_split.train[np.arange(64)].toarray().astype(np.float32))
    for _ in range(30):
        model.loss({"rows": rows})
    assert model.sampler.warmed_up()
    fresh = DiffRec(model.config).setup(planted_split.train)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.sampler.weights(), model.sampler.weights())
    users = torch.arange(10)
    assert torch.equal(fresh.score(users), model.score(users))


def test_ldiffrec_clusters_are_a_function_of_the_data(planted_split):
    a = LDiffRec(n_clusters=3, latent_size=30).setup(planted_split.train)
    b = LDiffRec(n_clusters=3, latent_size=30).setup(planted_split.train)
    assert torch.equal(a.item_cluster, b.item_cluster)
    sizes = torch.bincount(a.item_cluster)
    assert len(sizes) == 3 and int(sizes.min()) > 0
    assert sum(e.out_features for e in a.encoders) == 2 * 30


def test_sparse_history_input_matches_dense(planted_split):
    """Scoring feeds the raw history as a sparse matrix; it equals the dense computation."""
    from recsys_diffusion.models import history_rows

    model = DiffRec(**SMALL).setup(planted_split.train)
    users = torch.arange(25)
    dense = history_rows(planted_split.train, users, torch.device("cpu"))
    sparse = history_rows(planted_split.train, users, torch.device("cpu"), sparse=True)
    assert sparse.layout == torch.sparse_csr and torch.equal(sparse.to_dense(), dense)
    t = torch.full((25,), 4)
    with torch.no_grad():
        assert torch.allclose(
            model.denoiser(sparse, t, drop=False), model.denoiser(dense, t, drop=False), atol=1e-5
        )
        for n_calls in (1, 3, 5):
            assert torch.allclose(
                model.reverse(sparse, n_calls), model.reverse(dense, n_calls), atol=1e-5
            )
        assert torch.allclose(model.score(users), model.reverse(dense), atol=1e-5)
