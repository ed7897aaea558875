"""The T-CE, R-CE and ProtoDenoise wrappers through the public model and trainer interfaces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from recsys_denoise import prototypes as proto

from recsys.cli import main
from recsys.data.samplers import make_sampler
from recsys.data.split import SplitConfig, make_split
from recsys.data.synthetic import make_synthetic
from recsys.errors import ConfigError, DataError
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model, get_model_class, list_models
from recsys.testing import MODEL_CHECKS
from recsys.train.trainer import TrainConfig, Trainer

FAST = {"epochs": 5, "batch_size": 256, "learning_rate": 0.01, "progress": False, "num_threads": 1}
BASE = {"embedding_size": 16}


def _batch(split, size=64, n_negatives=1, kind="pairwise"):
    options = {"n_negatives": n_negatives} if kind == "pairwise" else {}
    sampler = make_sampler(kind, split.train, size, **options)
    return next(sampler.epoch(np.random.default_rng(0)))


def _trainer(model, split, dataset=None, checkpoint_dir=None, callbacks=None, **overrides):
    return Trainer(
        model,
        split,
        TrainConfig(**{**FAST, **overrides}),
        Evaluator(topk=(10,)),
        checkpoint_dir=checkpoint_dir,
        callbacks=callbacks,
        dataset=dataset,
    )


# -- the core contract: per-example losses -----------------------------------------------------
@pytest.mark.parametrize("name,n_negatives", [("bpr", 1), ("bpr", 3), ("lightgcn", 1)])
def test_example_losses_average_to_the_loss(noisy_split, name, n_negatives):
    torch.manual_seed(0)
    model = create_model(name, embedding_size=8, reg_weight=0.1).setup(noisy_split.train)
    batch = _batch(noisy_split, n_negatives=n_negatives)
    losses, reg = model.example_losses(batch)
    assert losses.shape == (64,) and set(reg) == {"reg"}
    terms = model.loss(batch)
    assert torch.allclose(losses.mean() + sum(reg.values()), sum(terms.values()))


def test_models_without_example_losses_say_so(noisy_split):
    model = create_model("pop").setup(noisy_split.train)
    with pytest.raises(NotImplementedError, match="per-example losses"):
        model.example_losses(_batch(noisy_split))


# -- configuration ----------------------------------------------------------------------------
def test_base_params_are_validated_by_the_base_config():
    model = create_model("tce", base="lightgcn", base_params={"n_layers": 1})
    assert model.config.base_params["n_layers"] == 1
    assert model.config.base_params["embedding_size"] == 64  # defaults filled in
    assert model.batch_kind == "pairwise"
    with pytest.raises(ConfigError, match=r"model\.base_params\.embeding_size"):
        create_model("tce", base_params={"embeding_size": 8})
    with pytest.raises(ConfigError, match=r"model\.base_params\.embedding_size"):
        create_model("rce", base_params={"embedding_size": -1})
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create_model("tce", base="nope")
    with pytest.raises(ConfigError, match="model.base='pop'"):
        create_model("rce", base="pop")
    with pytest.raises(ConfigError, match="model.max_drop_rate"):
        create_model("tce", max_drop_rate=1.5)


def test_bm3_base_trains_on_positive_pairs(noisy, noisy_split):
    model = create_model("tce", base="bm3", base_params={"embedding_size": 8}, num_gradual=0)
    assert model.batch_kind == "pairs"
    model.setup(noisy_split.train, noisy)
    batch = _batch(noisy_split, kind="pairs")
    torch.manual_seed(3)  # the same dropout draw of the target view for both
    losses, reg = model.base.example_losses(batch)
    assert losses.shape == (64,)
    torch.manual_seed(3)
    total = sum(model.base.loss(batch).values())
    assert torch.allclose(losses.mean() + sum(reg.values()), total, atol=1e-6)
    model.train()
    torch.manual_seed(3)
    terms = model.loss(batch)
    kept = losses.detach().sort().values[: 64 - 12]  # floor(0.2 * 64) = 12 dropped
    assert torch.allclose(terms["tce"], kept.mean(), atol=1e-6)


# -- T-CE -------------------------------------------------------------------------------------
def test_tce_truncates_the_scheduled_fraction_of_each_batch(noisy, noisy_split):
    torch.manual_seed(0)
    model = create_model(
        "tce", base_params=BASE, max_drop_rate=0.2, num_gradual=10, clean_min_rating=1
    )
    model.setup(noisy_split.train, noisy).train()
    batch = _batch(noisy_split, size=100)
    for step, expected in [(0, 0), (5, 10), (10, 20), (50, 20)]:
        model.step.fill_(step)
        losses, _ = model.base.example_losses(batch)
        loss = model.loss(batch)["tce"]
        kept = losses.detach().sort().values[: 100 - expected]
        assert torch.allclose(loss, kept.mean(), atol=1e-6)
        report = model.on_epoch_end(0)
        assert report["denoise_dropped"] == expected
        assert model.step == step + 1
    # the authors' batch base: one negative per positive doubles the positives dropped
    batch_model = create_model("tce", base_params=BASE, num_gradual=0, drop_base="batch")
    batch_model.setup(noisy_split.train).train()
    batch_model.loss(batch)
    assert batch_model.on_epoch_end(0)["denoise_dropped"] == 40


def test_tce_with_zero_drop_rate_trains_exactly_as_the_base(noisy_split):
    plain = _trainer(create_model("bpr", **BASE), noisy_split).fit()
    tce = _trainer(create_model("tce", base_params=BASE, max_drop_rate=0.0), noisy_split).fit()
    assert [h["loss"] for h in tce.history] == [h["loss"] for h in plain.history]
    assert tce.best_valid == plain.best_valid


def test_tce_drops_mostly_planted_noise(noisy, noisy_split):
    model = create_model(
        "tce", base_params=BASE, max_drop_rate=0.2, num_gradual=30, clean_min_rating=1
    )
    result = _trainer(model, noisy_split, noisy, epochs=8).fit()
    last = result.history[-1]
    assert last["denoise_drop_rate"] == pytest.approx(0.2)
    assert 0.15 < last["denoise_noise_rate"] < 0.25
    # the drops are noisier than the data: precision well above the base rate
    assert last["denoise_drop_precision"] > 1.3 * last["denoise_noise_rate"]
    assert 0 < last["denoise_drop_recall"] <= 1


def test_schedule_step_survives_checkpoint_and_resume(noisy, noisy_split, tmp_path):
    def make():
        return create_model(
            "tce", base_params=BASE, max_drop_rate=0.2, num_gradual=200, clean_min_rating=1
        )

    straight_trainer = _trainer(make(), noisy_split, noisy, checkpoint_dir=tmp_path / "a")
    straight = straight_trainer.fit()

    def crash(report):
        if report.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(make(), noisy_split, noisy, tmp_path / "b", callbacks=[crash]).fit()
    resumed_trainer = _trainer(make(), noisy_split, noisy, checkpoint_dir=tmp_path / "b")
    resumed = resumed_trainer.fit(resume=True)
    rates = [h["denoise_drop_rate"] for h in resumed.history]
    assert rates == [h["denoise_drop_rate"] for h in straight.history]
    assert rates == sorted(rates) and rates[-1] > rates[2] > 0  # it kept rising after resume
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert [h["denoise_dropped"] for h in resumed.history] == [
        h["denoise_dropped"] for h in straight.history
    ]


# -- R-CE -------------------------------------------------------------------------------------
def test_rce_reweights_by_the_probability_to_the_power_beta(noisy_split):
    torch.manual_seed(0)
    model = create_model("rce", base_params=BASE, beta=0.5).setup(noisy_split.train).train()
    batch = _batch(noisy_split)
    bpr = model.base
    u = bpr.user_embedding.weight[batch["user"]]
    diff = (u * bpr.item_embedding.weight[batch["pos"]]).sum(-1) - (
        u * bpr.item_embedding.weight[batch["neg"]]
    ).sum(-1)
    p = torch.sigmoid(diff)
    expected = (p.detach() ** 0.5 * -torch.log(p)).mean()
    assert torch.allclose(model.loss(batch)["rce"], expected, atol=1e-6)
    zero = create_model("rce", base_params=BASE, beta=0.0).setup(noisy_split.train)
    zero.load_state_dict(model.state_dict())
    assert torch.allclose(zero.loss(batch)["rce"], bpr.loss(batch)["bpr"])


# -- ProtoDenoise -----------------------------------------------------------------------------
def test_prototype_anchors_are_each_users_closest_items(noisy, noisy_split):
    train = noisy_split.train
    items = proto.normalise_features(noisy.item_features["text"].dense())
    prototypes, sim = proto.user_prototypes(train, items)
    assert np.allclose(np.linalg.norm(prototypes, axis=1), 1.0, atol=1e-5)
    anchor = proto.anchors(train, sim, 0.5, 3)
    counts = np.diff(train.indptr)
    per_user = np.add.reduceat(anchor.astype(int), train.indptr[:-1])
    expected = [proto.anchor_count(int(n), 0.5, 3) for n in counts]
    assert per_user.tolist() == expected
    u = 5
    row = slice(train.indptr[u], train.indptr[u + 1])
    assert sim[row][anchor[row]].min() >= sim[row][~anchor[row]].max()
    # planted noise is random items, far from the user's prototype: anchors are much cleaner
    model = create_model("protodenoise", modality="text", clean_min_rating=1)
    model.setup(train, noisy)
    assert torch.equal(model.anchor, torch.from_numpy(anchor))
    flags = model.noisy.numpy()
    assert 0.15 < flags.mean() < 0.25
    assert (anchor & flags).sum() / anchor.sum() < 0.5 * flags.mean()
    report = model.on_epoch_end(0)
    assert report["denoise_anchor_noise_rate"] < 0.5 * flags.mean()


@pytest.mark.parametrize("n_users,n_contrast", [(3, 2), (4, 2), (6, 3)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contrast_prototypes_are_other_users_never_the_user_itself(n_users, n_contrast, seed):
    # the shared contrast sample used to include the user itself for the drawn users (with
    # 3 users and 2 contrasts: two of the three), which biased their q_ui downwards
    import itertools

    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, 8)) < 0.5).astype(np.float32)
    dense[np.arange(n_users), rng.integers(0, 8, n_users)] = 1.0  # every user has an item
    train = sp.csr_array(dense)
    items = proto.normalise_features(rng.normal(size=(8, 4)))
    prototypes, sim = proto.user_prototypes(train, items)
    tau = 0.1
    q = proto.contrast_posterior(train, items, prototypes, sim, n_contrast, tau, seed=seed)
    users = np.repeat(np.arange(n_users), np.diff(train.indptr))

    def by_hand(u: int, contrast: tuple[int, ...]) -> np.ndarray:
        row = slice(train.indptr[u], train.indptr[u + 1])
        logits = items[train.indices[row]] @ prototypes[list(contrast)].T / tau
        lme = np.log(np.exp(logits.astype(np.float64)).mean(axis=1))
        return 1.0 / (1.0 + np.exp(-(sim[row] / tau - lme)))

    for u in range(n_users):
        others = [c for c in range(n_users) if c != u]
        matches = [
            c
            for c in itertools.combinations(others, n_contrast)
            if np.allclose(q[users == u], by_hand(u, c), atol=1e-5)
        ]
        assert matches, f"user {u}'s q is not that of any {n_contrast} other users"


def test_contrast_posterior_of_the_only_user_is_neutral():
    train = sp.csr_array(np.array([[1, 1, 0, 1]], dtype=np.float32))
    items = proto.normalise_features(np.random.default_rng(0).normal(size=(4, 3)))
    prototypes, sim = proto.user_prototypes(train, items)
    q = proto.contrast_posterior(train, items, prototypes, sim, 20, 0.1)
    assert np.array_equal(q, np.full(3, 0.5, dtype=np.float32))


def test_anchors_are_never_dropped(noisy, noisy_split):
    torch.manual_seed(0)
    greedy = {
        "base_params": BASE,
        "num_gradual": 0,
        "max_drop_rate": 0.5,
        "candidate_factor": 2.0,  # every example is a candidate
        "clean_threshold": 0.999,  # and fails the clean test
        "modality": "text",
    }
    batch = _batch(noisy_split, size=200)
    all_anchors = create_model("protodenoise", anchor_share=1.0, **greedy)
    all_anchors.setup(noisy_split.train, noisy).train()
    all_anchors.loss(batch)
    assert all_anchors.on_epoch_end(0)["denoise_dropped"] == 0
    half = create_model("protodenoise", anchor_share=0.5, min_anchors=0, **greedy)
    half.setup(noisy_split.train, noisy).train()
    index, found = half.example_index(batch)
    assert found.all()
    half.loss(batch)
    dropped = half.on_epoch_end(0)["denoise_dropped"]
    # only non-anchors can go; one whose loss is tiny and prototype evidence near 1 can still
    # pass the clean test, so "all of them" would depend on the initialisation
    assert 0 < dropped <= int((~half.anchor[index]).sum())
    none = create_model("protodenoise", anchor_share=0.0, min_anchors=0, **greedy)
    none.setup(noisy_split.train, noisy).train()
    none.loss(batch)
    assert none.on_epoch_end(0)["denoise_dropped"] == 199  # all but one


def test_protodenoise_soft_targets_and_unknown_modality(noisy, noisy_split):
    model = create_model("protodenoise", base_params=BASE, modality="text", soft_target_beta=0.3)
    model.setup(noisy_split.train, noisy).train()
    terms = model.loss(_batch(noisy_split))
    assert torch.isfinite(terms["proto"])
    terms["proto"].backward()
    assert model.base.user_embedding.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="sound"):
        create_model("protodenoise", modality="sound").setup(noisy_split.train, noisy)
    with pytest.raises(ConfigError, match="needs the dataset"):
        create_model("protodenoise", modality="text").setup(noisy_split.train)


# -- the plugin as a whole --------------------------------------------------------------------
@pytest.mark.parametrize("check", MODEL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", ["tce", "rce", "protodenoise"])
def test_conformance(name, check, noisy_split):
    check(get_model_class(name), noisy_split)


def test_discovered_through_the_entry_point(capsys, tmp_path):
    infos = {info.name: info for info in list_models()}
    for name in ("tce", "rce", "protodenoise"):
        assert infos[name].source == "recsys-denoise"
    assert main(["models"]) == 0
    assert "protodenoise" in capsys.readouterr().out
    code = main(
        [
            "train",
            "--dataset",
            "synthetic-200x100x2000",
            "--model",
            "tce",
            "--set",
            "train.epochs=2",
            "--set",
            "data.label_noise=0.2",
            "--set",
            "model.clean_min_rating=1",
            "--set",
            "model.num_gradual=5",
            "--set",
            "split.clean_test_min_rating=1",
            "-o",
            str(tmp_path / "runs"),
            "--no-tracking",
            "--quiet",
        ]
    )
    assert code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    history = json.loads((run_dir / "history.json").read_text())
    assert history[-1]["denoise_dropped"] > 0 and "denoise_drop_precision" in history[-1]
    assert 0.1 < history[-1]["denoise_noise_rate"] < 0.3  # data.label_noise reached the data


def test_label_noise_is_only_for_synthetic_data():
    from recsys.data.catalog import DataConfig, load_dataset

    with pytest.raises(ConfigError, match="data.label_noise"):
        load_dataset(DataConfig(name="ml-100k", label_noise=0.1))


def test_clean_test_split_keeps_only_clean_test_interactions(noisy):
    split = make_split(noisy, SplitConfig(clean_test_min_rating=1, seed=3))
    plain = make_split(noisy, SplitConfig(seed=3))
    assert split.train.nnz == plain.train.nnz and split.valid.nnz == plain.valid.nnz
    users, items = split.test.nonzero()
    all_users, all_items = noisy.coo()
    keys = all_users * noisy.n_items + all_items
    ratings = noisy.ratings[np.searchsorted(keys, users * noisy.n_items + items)]
    assert (ratings == 1).all()
    assert 0.7 * plain.test.nnz < split.test.nnz < plain.test.nnz
    no_ratings = make_synthetic(50, 40, 500, seed=0)
    no_ratings.ratings = None
    with pytest.raises(DataError, match="clean_test_min_rating needs ratings"):
        make_split(no_ratings, SplitConfig(clean_test_min_rating=4))
