"""The paper's pointwise setting: GMF with BCE on positives and sampled negatives, wrapped by
T-CE (only positives dropped) and R-CE (positives and negatives reweighted), as in the
authors' code (WenjieWWJ/DenoisingRec, T_CE/loss.py and R_CE/loss.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from recsys_denoise import positive_truncation_keep

from recsys.cli import main
from recsys.data.samplers import make_sampler
from recsys.models.registry import create_model, get_model_class, list_models
from recsys.testing import MODEL_CHECKS


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("data-cache")))
    monkeypatch.delenv("RECSYS_TRACKING_URI", raising=False)


def _pointwise_batch(split, size=100, seed=0):
    sampler = make_sampler("pointwise", split.train, size)
    return next(sampler.epoch(np.random.default_rng(seed)))


def _hand_gmf(model_name="gmf", **kwargs):
    """A GMF with d = 1, h = 1, b = 0, user factors (1, 2) and item factors (1, -1, 0.5):
    the logit of (u, i) is p_u * q_i."""
    train = sp.csr_array(np.array([[1, 0, 0], [0, 0, 1]], dtype=np.float32))
    base = {"embedding_size": 1}
    if model_name == "gmf":
        model = create_model("gmf", **base).setup(train)
        gmf = model
    else:
        model = create_model(model_name, base="gmf", base_params=base, **kwargs).setup(train)
        gmf = model.base
    with torch.no_grad():
        gmf.user_embedding.weight.copy_(torch.tensor([[1.0], [2.0]]))
        gmf.item_embedding.weight.copy_(torch.tensor([[1.0], [-1.0], [0.5]]))
        gmf.output.weight.fill_(1.0)
        gmf.output.bias.zero_()
    batch = {
        "user": torch.tensor([0, 0, 1, 1]),
        "item": torch.tensor([0, 1, 2, 0]),
        "label": torch.tensor([1.0, 0.0, 1.0, 0.0]),
    }
    return model.train(), batch


# -- GMF --------------------------------------------------------------------------------------
def test_gmf_example_losses_are_per_example_bce():
    model, batch = _hand_gmf()
    losses, reg = model.example_losses(batch)
    assert reg == {}

    def sigmoid(x):
        return 1 / (1 + math.exp(-x))

    # logits 1, -1, 1, 2 with labels 1, 0, 1, 0
    expected = [
        -math.log(sigmoid(1)),
        -math.log(1 - sigmoid(-1)),
        -math.log(sigmoid(1)),
        -math.log(1 - sigmoid(2)),
    ]
    assert torch.allclose(losses, torch.tensor(expected), atol=1e-6)
    assert torch.allclose(model.loss(batch)["bce"], losses.mean())
    # the score is the logit: (p_u * h) . q_i + b
    model.eval()
    assert torch.allclose(model.score(torch.tensor([1])), torch.tensor([[2.0, -2.0, 1.0]]))


@pytest.mark.parametrize("check", MODEL_CHECKS, ids=lambda c: c.__name__)
def test_gmf_conformance(check, noisy_split):
    check(get_model_class("gmf"), noisy_split)


def test_gmf_is_a_plugin_model_with_a_pointwise_batch_kind():
    infos = {info.name: info for info in list_models()}
    assert infos["gmf"].source == "recsys-denoise"
    assert get_model_class("gmf").batch_kind == "pointwise"
    for wrapper in ("tce", "rce", "protodenoise"):
        assert create_model(wrapper, base="gmf").batch_kind == "pointwise"


# -- T-CE on pointwise batches ----------------------------------------------------------------
@pytest.mark.parametrize("drop_base", ["positives", "batch"])
def test_tce_drops_only_the_largest_loss_positives(noisy_split, drop_base):
    torch.manual_seed(0)
    model = create_model(
        "tce",
        base="gmf",
        base_params={"embedding_size": 8},
        max_drop_rate=0.2,
        num_gradual=0,
        drop_base=drop_base,
    )
    model.setup(noisy_split.train).train()
    with torch.no_grad():  # spread the losses: at the initial ~0 logits every BCE is ~ln 2
        model.base.user_embedding.weight.normal_()
        model.base.item_embedding.weight.normal_()
    batch = _pointwise_batch(noisy_split, size=100)
    label = batch["label"]
    n_pos = int(label.sum())
    assert 20 < n_pos < 80
    losses, _ = model.base.example_losses(batch)
    losses = losses.detach()
    n_drop = math.floor(0.2 * (n_pos if drop_base == "positives" else 100))
    # the largest positive losses, not the largest losses: some negatives are larger
    top_pos = torch.topk(torch.where(label > 0, losses, -torch.inf), n_drop).indices
    assert losses[label == 0].max() > losses[top_pos].min()
    keep = torch.ones(100, dtype=torch.bool)
    keep[top_pos] = False
    loss = model.loss(batch)["tce"]
    assert torch.allclose(loss, losses[keep].mean(), atol=1e-6)
    report = model.on_epoch_end(0)
    assert report["denoise_dropped"] == n_drop
    assert report["denoise_dropped_share"] == pytest.approx(n_drop / n_pos)


def test_positive_truncation_never_drops_negatives():
    losses = torch.tensor([9.0, 0.0, 3.0, 8.0, 1.0, 0.0])
    positive = torch.tensor([False, True, True, False, True, True])
    keep = positive_truncation_keep(losses, positive, 0.5, "positives")  # floor(0.5 * 4) = 2
    assert keep.tolist() == [True, True, False, True, False, True]
    # batch units: floor(0.5 * 6) = 3, all of them positives: a positive whose loss is 0 goes
    # (the earlier of the two), never a negative, whatever its loss
    keep = positive_truncation_keep(losses, positive, 0.5, "batch")
    assert keep.tolist() == [True, False, False, True, False, True]
    # capped at all positives but one
    keep = positive_truncation_keep(losses, positive, 0.9, "batch")
    assert (~keep).sum() == 3 and keep[[0, 3]].all()
    # no positives: nothing dropped
    assert positive_truncation_keep(losses, torch.zeros(6, dtype=torch.bool), 0.9, "batch").all()


def test_tce_with_zero_drop_rate_trains_exactly_as_gmf(noisy_split):
    from recsys.eval.evaluator import Evaluator
    from recsys.train.trainer import TrainConfig, Trainer

    cfg = TrainConfig(epochs=3, batch_size=512, learning_rate=0.01, progress=False, num_threads=1)
    plain = Trainer(create_model("gmf", embedding_size=8), noisy_split, cfg, Evaluator(topk=(10,)))
    tce = create_model("tce", base="gmf", base_params={"embedding_size": 8}, max_drop_rate=0.0)
    wrapped = Trainer(tce, noisy_split, cfg, Evaluator(topk=(10,)))
    a, b = plain.fit(), wrapped.fit()
    assert [h["loss"] for h in b.history] == [h["loss"] for h in a.history]
    assert b.best_valid == a.best_valid


# -- R-CE on pointwise batches ----------------------------------------------------------------
def test_rce_weights_positives_and_negatives_as_the_authors():
    model, batch = _hand_gmf("rce", beta=0.5)

    def sigmoid(x):
        return 1 / (1 + math.exp(-x))

    logits = [1.0, -1.0, 1.0, 2.0]
    labels = [1, 0, 1, 0]
    # R_CE/loss.py: weight = sigmoid(y)^beta * t + (1 - sigmoid(y))^beta * (1 - t)
    weights = [
        sigmoid(s) ** 0.5 if t else (1 - sigmoid(s)) ** 0.5
        for s, t in zip(logits, labels, strict=True)
    ]
    bce = [
        -math.log(sigmoid(s)) if t else -math.log(1 - sigmoid(s))
        for s, t in zip(logits, labels, strict=True)
    ]
    expected = sum(w * b for w, b in zip(weights, bce, strict=True)) / 4
    loss = model.loss(batch)["rce"]
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # the weights are constants (detached): d loss / d logit = w * (sigmoid(s) - t) / B, and
    # user 1's factor gets examples 2 and 3's, times their item factors 0.5 and 1 (h = 1)
    model.zero_grad()
    model.loss(batch)["rce"].backward()
    d_logit = [w * (sigmoid(s) - t) / 4 for w, s, t in zip(weights, logits, labels, strict=True)]
    grad = model.base.user_embedding.weight.grad[1, 0].item()
    assert grad == pytest.approx(d_logit[2] * 0.5 + d_logit[3] * 1.0, rel=1e-5)
    # beta = 0: plain BCE
    zero, _ = _hand_gmf("rce", beta=0.0)
    assert zero.loss(batch)["rce"].item() == pytest.approx(sum(bce) / 4, rel=1e-6)


def test_rce_noise_weights_count_positives_only(noisy, noisy_split):
    model = create_model("rce", base="gmf", clean_min_rating=1).setup(noisy_split.train, noisy)
    model.train()
    batch = _pointwise_batch(noisy_split, size=200)
    model.loss(batch)
    report = model.on_epoch_end(0)
    assert 0 < report["denoise_weight_clean"] <= 1 and 0 < report["denoise_weight_noisy"] <= 1
    # noise rate among positives (about 20%), not diluted by the negatives
    assert 0.1 < report["denoise_noise_rate"] < 0.3


# -- ProtoDenoise on pointwise batches --------------------------------------------------------
def test_protodenoise_drops_only_positives(noisy, noisy_split):
    model = create_model(
        "protodenoise",
        base="gmf",
        base_params={"embedding_size": 8},
        num_gradual=0,
        max_drop_rate=0.5,
        anchor_share=0.0,
        min_anchors=0,
        clean_threshold=0.999,
        soft_target_beta=0.3,
        modality="text",
    )
    model.setup(noisy_split.train, noisy).train()
    batch = _pointwise_batch(noisy_split, size=200)
    n_pos = int(batch["label"].sum())
    loss = model.loss(batch)["proto"]
    assert torch.isfinite(loss)
    assert 0 < model.on_epoch_end(0)["denoise_dropped"] <= n_pos // 2


# -- the command line ---------------------------------------------------------------------------
def _train(tmp_path, *settings: str) -> tuple[int, list[dict]]:
    runs = tmp_path / "runs"
    code = main(
        [
            "train",
            "--dataset",
            "synthetic-200x100x2000",
            "--model",
            "tce",
            "--set",
            "model.base=gmf",
            "--set",
            "train.epochs=3",
            "--set",
            "train.batch_size=256",
            "--set",
            "train.learning_rate=0.01",
            "--set",
            "data.label_noise=0.2",
            "--set",
            "model.clean_min_rating=1",
            "--set",
            "model.num_gradual=10",
            "--set",
            "split.clean_test_min_rating=1",
            *[x for s in settings for x in ("--set", s)],
            "-o",
            str(runs),
            "--no-tracking",
            "--quiet",
        ]
    )
    if code != 0:
        return code, []
    (run_dir,) = runs.iterdir()
    return code, json.loads((run_dir / "history.json").read_text())


def test_cli_trains_tce_around_gmf(tmp_path):
    code, history = _train(tmp_path, "model.drop_base=batch")
    assert code == 0
    last = history[-1]
    assert last["denoise_drop_rate"] == pytest.approx(0.2)
    # batch units: 0.2 of positives plus negatives, all from the positives: ~0.4 of them
    assert 0.3 < last["denoise_dropped_share"] < 0.45
    assert 0.1 < last["denoise_noise_rate"] < 0.3 and "denoise_drop_precision" in last
    assert np.isfinite(last["loss"]) and last["valid_recall_at_20"] > 0


def test_cli_pointwise_batches_take_train_n_negatives(tmp_path):
    # three negatives per positive: in batch units 0.2 of the whole batch (4 rows per
    # positive) falls on the positives, ~0.8 of them
    code, history = _train(tmp_path, "model.drop_base=batch", "train.n_negatives=3")
    assert code == 0
    assert 0.7 < history[-1]["denoise_dropped_share"] < 0.85


def test_gmf_learns_the_planted_factors(noisy_split):
    from recsys.eval.evaluator import Evaluator
    from recsys.train.trainer import TrainConfig, Trainer

    cfg = TrainConfig(
        epochs=10, batch_size=256, learning_rate=0.01, progress=False, seed=0, num_threads=1
    )
    evaluator = Evaluator(topk=(10,))
    gmf = Trainer(create_model("gmf", embedding_size=16), noisy_split, cfg, evaluator).fit()
    pop = Trainer(create_model("pop"), noisy_split, cfg, evaluator).fit()
    assert gmf.best_valid["recall_at_10"] > 1.2 * pop.best_valid["recall_at_10"]
