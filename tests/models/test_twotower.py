"""The two-tower model and its self-supervised item-tower task (Yao et al.)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from recsys.data.dataset import Dataset, FeatureTable, Vocabulary
from recsys.data.samplers import make_sampler
from recsys.data.split import split_ratio
from recsys.errors import ConfigError, DataError
from recsys.eval.evaluator import Evaluator
from recsys.models.pop import Pop
from recsys.models.ssl_masks import (
    cfm_groups,
    dense_codes,
    masked_set_size,
    multi_hot_codes,
    mutual_information,
)
from recsys.models.twotower import TwoTower, bag_mean, csr_gather
from recsys.train.trainer import TrainConfig, Trainer


@pytest.fixture(autouse=True)
def _one_thread():
    # these tests are tiny: one thread avoids oversubscription on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(split, size=64, seed=0):
    return next(make_sampler("pairs", split.train, size).epoch(np.random.default_rng(seed)))


def _model(split, dataset, **params) -> TwoTower:
    torch.manual_seed(0)
    return TwoTower(**params).setup(split.train, dataset)


# -- masks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ssl", ["rfm", "cfm"])
def test_views_are_complementary_and_cover_every_feature(planted, planted_split, ssl):
    model = _model(planted_split, planted, ssl=ssl)
    k = len(model.item_feature_names)
    assert model.item_feature_names == ["item_id", "text", "image", "genre"]
    items = torch.arange(10)
    plain = model.item_inputs(items)
    default = model.default_embedding.detach()
    seen = set()
    for _ in range(50):
        mask = model.ssl_mask()
        assert mask.shape == (k,) and int(mask.sum()) == masked_set_size(k)
        one, two = model.item_inputs(items, mask), model.item_inputs(items, ~mask)
        for f in range(k):
            in_one = torch.equal(one[:, f], default[f].expand(10, -1))
            in_two = torch.equal(two[:, f], default[f].expand(10, -1))
            # masked in exactly one view, and the other view keeps the real feature
            assert in_one != in_two
            assert torch.equal((two if in_one else one)[:, f], plain[:, f])
        seen.add(tuple(mask.tolist()))
    assert len(seen) > 1  # a new pattern per batch


def test_default_embedding_replaces_masked_features(planted, planted_split):
    model = _model(planted_split, planted, ssl="rfm")
    items = torch.tensor([3, 5, 7])
    mask = torch.tensor([True, False, True, False])
    x = model.item_inputs(items, mask)
    assert torch.equal(x[:, 0], model.default_embedding[0].detach().expand(3, -1))
    assert torch.equal(x[:, 2], model.default_embedding[2].detach().expand(3, -1))
    assert torch.equal(x[:, 1], model.item_inputs(items)[:, 1])
    # a masked view does not depend on the masked feature, only on its default
    with torch.no_grad():
        before = model.item_tower(items, mask)
        model.item_embedding.weight.add_(1.0)
        assert torch.allclose(model.item_tower(items, mask), before)
        model.default_embedding[0].add_(1.0)
        assert not torch.allclose(model.item_tower(items, mask), before)


def test_masked_set_size():
    assert [masked_set_size(k) for k in (2, 3, 4, 5, 6, 9)] == [1, 2, 3, 3, 4, 5]
    # the paper's aim, views of about equal size
    assert [masked_set_size(k, "half") for k in (2, 3, 4, 5, 6, 9)] == [1, 1, 2, 2, 3, 4]
    with pytest.raises(ValueError):
        masked_set_size(1)
    with pytest.raises(ValueError, match="unknown mask rule"):
        masked_set_size(4, "third")


@pytest.mark.parametrize("ssl", ["rfm", "cfm"])
def test_half_masks_give_two_views_of_equal_size_with_cfm_keeping_planted_pairs(ssl):
    ds = _correlated_dataset()
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=0)
    model = TwoTower(ssl=ssl, ssl_mask_size="half").setup(split.train, ds)
    k = len(model.item_feature_names)  # 6: three masked in each view
    for _ in range(20):
        assert int(model.ssl_mask().sum()) == 3 == k - 3
    if ssl == "cfm":
        groups = model.cfm_table.numpy()
        idx = {n: i for i, n in enumerate(model.item_feature_names)}
        for x, y in (("a", "a_copy"), ("b", "b_copy"), ("a_copy", "a"), ("b_copy", "b")):
            assert groups[idx[x], idx[x]] and groups[idx[x], idx[y]], (x, y)


def test_a_bad_mask_size_setting_names_the_key(tmp_path):
    from recsys.testing import check_bad_setting_refused

    check_bad_setting_refused(
        "twotower", "model.ssl_mask_size=third", "model.ssl_mask_size", tmp_path
    )


def _correlated_dataset(n_items: int = 2000, seed: int = 0) -> Dataset:
    """Items with planted pairs: ``a``/``a_copy`` and ``b``/``b_copy`` (5% noise), ``c`` alone;
    every feature has 8 values, so mutual information is not biased by cardinality."""
    rng = np.random.default_rng(seed)
    a, b, c = (rng.integers(0, 8, n_items) for _ in range(3))

    def noisy(x):
        flip = rng.random(n_items) < 0.05
        return np.where(flip, rng.integers(0, 8, n_items), x)

    vocab = [str(v) for v in range(8)]
    tables = {
        name: FeatureTable(name, "categorical", values, vocab)
        for name, values in (
            ("a", a),
            ("b", b),
            ("a_copy", noisy(a)),
            ("c", c),
            ("b_copy", noisy(b)),
        )
    }
    n_users = 50
    users = rng.integers(0, n_users, 3000)
    items = rng.integers(0, n_items, 3000)
    return Dataset.from_arrays(
        "correlated",
        Vocabulary([str(u) for u in range(n_users)], "user"),
        Vocabulary([str(i) for i in range(n_items)], "item"),
        users,
        items,
        item_features=tables,
    )


def test_mutual_information_matches_hand_computation():
    # x = y: MI = H = log 2; z independent of x: MI = 0
    codes = np.array([[0, 0, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1]])
    mi = mutual_information(codes)
    assert mi[0, 1] == pytest.approx(np.log(2))
    assert mi[0, 2] == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(mi, mi.T)


def test_cfm_groups_highly_correlated_features():
    ds = _correlated_dataset()
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=0)
    model = TwoTower(ssl="cfm").setup(split.train, ds)
    names = model.item_feature_names
    assert names == ["item_id", "a", "b", "a_copy", "c", "b_copy"]
    groups = model.cfm_table.numpy()
    idx = {n: i for i, n in enumerate(names)}
    # the seed's correlated partner is always masked with it
    for x, y in (("a", "a_copy"), ("b", "b_copy"), ("a_copy", "a"), ("b_copy", "b")):
        assert groups[idx[x], idx[x]] and groups[idx[x], idx[y]], (x, y)
    # and a planted pair is never split by a seed in one of them
    mi = model.feature_mi.numpy()
    assert mi[idx["a"], idx["a_copy"]] > 5 * mi[idx["a"], idx["b"]]
    assert groups.sum(1).tolist() == [masked_set_size(6)] * 6


def test_cfm_groups_correlated_features_of_any_cardinality():
    # the plug-in MI favours many distinct codes: the id (MI(f, id) = H(f)) and an independent
    # multi-valued feature (one hashed set per item) outranked the planted copy, so the planted
    # pair was never masked together; the chance-adjusted MI groups it
    n_items = 2000
    rng = np.random.default_rng(0)
    a = rng.integers(0, 8, n_items)
    a_copy = np.where(rng.random(n_items) < 0.05, rng.integers(0, 8, n_items), a)
    tag_cols = np.stack([rng.choice(40, 3, replace=False) for _ in range(n_items)])
    tags = sp.csr_array(
        (np.ones(3 * n_items), (np.repeat(np.arange(n_items), 3), tag_cols.ravel())),
        shape=(n_items, 40),
    )
    vocab = [str(v) for v in range(8)]
    tables = {
        "a": FeatureTable("a", "categorical", a, vocab),
        "tags": FeatureTable("tags", "multi_hot", tags, [f"t{t}" for t in range(40)]),
        "a_copy": FeatureTable("a_copy", "categorical", a_copy, vocab),
        "noise": FeatureTable("noise", "dense", rng.standard_normal((n_items, 2))),
    }
    users, items = rng.integers(0, 50, 3000), rng.integers(0, n_items, 3000)
    ds = Dataset.from_arrays(
        "mixed",
        Vocabulary([str(u) for u in range(50)], "user"),
        Vocabulary([str(i) for i in range(n_items)], "item"),
        users,
        items,
        item_features=tables,
    )
    model = TwoTower(ssl="cfm").setup(split_ratio(ds, (0.8, 0.1, 0.1), seed=0).train, ds)
    idx = {n: i for i, n in enumerate(model.item_feature_names)}
    groups, mi = model.cfm_table.numpy(), model.feature_mi.numpy()
    assert groups[idx["a"], idx["a_copy"]] and groups[idx["a_copy"], idx["a"]]
    raw = mutual_information(np.stack([a, a_copy, multi_hot_codes(tags)], 1))
    assert raw[0, 2] > raw[0, 1]  # plug-in: the independent tags look more related than the copy
    for name in ("tags", "noise", "item_id"):
        assert abs(mi[idx["a"], idx[name]]) < 0.05 * mi[idx["a"], idx["a_copy"]], name
    assert np.allclose(mi[idx["item_id"], [idx["a"], idx["tags"]]], 0.0, atol=1e-9)


def test_cfm_groups_by_top_mutual_information():
    mi = np.array(
        [
            [1.0, 0.9, 0.1, 0.2],
            [0.9, 1.0, 0.3, 0.1],
            [0.1, 0.3, 1.0, 0.8],
            [0.2, 0.1, 0.8, 1.0],
        ]
    )
    # k = 4: the seed plus its top floor(4/2) = 2 neighbours
    groups = cfm_groups(mi)
    assert groups.tolist() == [
        [True, True, False, True],
        [True, True, True, False],
        [False, True, True, True],
        [True, False, True, True],
    ]


def test_feature_codes_for_multi_hot_and_dense():
    m = sp.csr_array(np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 0, 0]]))
    codes = multi_hot_codes(m)
    assert codes[0] == codes[2] and len({codes[0], codes[1], codes[3]}) == 3
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 5.0], [-5.0, -5.0], [5.0, -5.0]])
    truth = rng.integers(0, 3, 300)
    x = centres[truth] + 0.1 * rng.standard_normal((300, 2))
    found = dense_codes(x, n_clusters=3)
    mi = mutual_information(np.stack([truth, found], 1))
    assert mi[0, 1] == pytest.approx(mi[0, 0], rel=1e-6)  # the clusters are recovered


# -- sampling, bags -------------------------------------------------------------------------


def test_ssl_items_are_uniform_over_the_corpus(planted, planted_split):
    # small SSL batches (about 55 distinct items of 200) so the counts can show a bias
    model = _model(planted_split, planted, ssl="cfm", ssl_batch_size=64)
    seen_ssl, seen_main = [], []
    tower = model.item_tower

    def spy(items, mask=None, value_dropout=0.0):
        (seen_main if mask is None else seen_ssl).append(items)
        return tower(items, mask, value_dropout)

    model.item_tower = spy  # type: ignore[method-assign]
    sampler = make_sampler("pairs", planted_split.train, 1024)
    rng = np.random.default_rng(0)
    main_counts = np.zeros(model.n_items)
    with torch.no_grad():
        for _ in range(4):
            for batch in sampler.epoch(rng):
                model.loss(batch)
                main_counts += np.bincount(batch["item"].numpy(), minlength=model.n_items)
    # each SSL step runs the tower on the same items twice (the two views)
    ssl_items = torch.cat(seen_ssl[::2]).numpy()
    counts = np.bincount(ssl_items, minlength=model.n_items)
    expected = len(ssl_items) / model.n_items
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # chi-square with n_items - 1 = 199 degrees of freedom: mean 199, sd 20
    assert chi2 < 199 + 5 * 20
    # whereas the main task's items follow the power-law training distribution
    main_expected = main_counts.sum() / model.n_items
    main_chi2 = float(((main_counts - main_expected) ** 2 / main_expected).sum())
    assert main_chi2 > 10 * chi2


def test_bag_mean_and_value_dropout():
    indptr = torch.tensor([0, 2, 2, 5])
    indices = torch.tensor([0, 3, 1, 2, 3])
    weight = torch.arange(8, dtype=torch.float32).view(4, 2)
    owner, values, offsets = csr_gather(indptr, indices, torch.tensor([2, 1, 0]))
    assert values.tolist() == [1, 2, 3, 0, 3] and owner.tolist() == [0, 0, 0, 2, 2]
    out = bag_mean(weight, owner, values, offsets)
    assert torch.allclose(out[0], weight[[1, 2, 3]].mean(0))
    assert torch.equal(out[1], torch.zeros(2))  # empty bag
    assert torch.allclose(out[2], weight[[0, 3]].mean(0))
    keep = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])  # dropped values leave the mean
    out = bag_mean(weight, owner, values, offsets, keep)
    assert torch.allclose(out[0], weight[[1, 3]].mean(0))
    assert torch.allclose(out[2], weight[3])


def test_history_bag_leaves_out_the_target_item(planted, planted_split):
    model = _model(planted_split, planted, history=True, ssl="none")
    user = torch.tensor([0])
    row = planted_split.train[[0]].indices
    target = torch.tensor([int(row[0])])
    with torch.no_grad():
        full = model.query_tower(user)
        left_out = model.query_tower(user, exclude_items=target)
        assert not torch.allclose(full, left_out)
        # excluding an item the user never had changes nothing
        absent = int(np.setdiff1d(np.arange(model.n_items), row)[0])
        assert torch.allclose(full, model.query_tower(user, exclude_items=torch.tensor([absent])))


# -- losses and training ----------------------------------------------------------------------


def test_loss_terms_are_named_and_logged_separately(planted, planted_split):
    cfg = TrainConfig(epochs=2, batch_size=512, progress=False, valid_metric="recall_at_20")
    model = TwoTower(ssl="cfm", ssl_weight=0.3)
    evaluator = Evaluator(topk=(20,), metrics=("recall",))
    result = Trainer(model, planted_split, cfg, evaluator, dataset=planted).fit()
    for row in result.history:
        assert {"main", "ssl", "loss"} <= set(row)
        assert row["loss"] == pytest.approx(row["main"] + row["ssl"], rel=1e-6)
    terms = model.loss(_batch(planted_split))
    assert set(terms) == {"main", "ssl"}
    # without SSL, or with one feature only, the term is absent
    assert set(_model(planted_split, planted, ssl="none").loss(_batch(planted_split))) == {"main"}
    id_only = _model(planted_split, planted, item_features=[])
    assert set(id_only.loss(_batch(planted_split))) == {"main"}


def test_ssl_term_is_weighted_by_alpha(planted, planted_split):
    batch = _batch(planted_split)
    values = []
    for alpha in (0.5, 1.0):
        model = _model(planted_split, planted, ssl="rfm", ssl_weight=alpha)
        torch.manual_seed(3)  # the same SSL sample and mask
        values.append(float(model.loss(batch)["ssl"].detach()))
    assert values[1] == pytest.approx(2 * values[0], rel=1e-5)


def test_logq_correction_subtracts_the_log_probability_of_being_a_candidate(planted, planted_split):
    # distinct candidates: j is one when any of the B rows draws it, 1 - (1 - p_j)^B (log p_j
    # over-corrected popular items by up to log B); every row's item: p_j per row
    batch = _batch(planted_split)
    counts = np.bincount(planted_split.train.indices, minlength=planted_split.shape[1])
    p = np.maximum(counts, 1) / counts.sum()
    rows = len(batch["item"])
    for distinct in (True, False):
        options = {"ssl": "none", "remove_accidental_hits": distinct}
        plain = _model(planted_split, planted, **options)
        corrected = _model(planted_split, planted, logq_correction=True, **options)
        a, labels = plain.main_logits(batch)
        b, _ = corrected.main_logits(batch)
        if distinct:
            candidates = torch.unique(batch["item"]).numpy()
            expected = np.log(1 - (1 - p[candidates]) ** rows)
            assert torch.equal(torch.from_numpy(candidates)[labels], batch["item"])
        else:
            expected = np.log(p[batch["item"].numpy()])
        shift = torch.from_numpy(expected).float().expand_as(a)
        assert torch.allclose(a - b, shift, atol=1e-5, rtol=1e-5)


def test_every_row_item_is_a_candidate_without_hit_removal(planted, planted_split):
    batch = _batch(planted_split)
    model = _model(planted_split, planted, ssl="none", remove_accidental_hits=False)
    logits, labels = model.main_logits(batch)
    assert logits.shape == (len(labels), len(labels))
    assert torch.equal(labels, torch.arange(len(labels)))


def test_two_tower_learns_and_beats_popularity(planted, planted_split):
    cfg = TrainConfig(
        epochs=8, batch_size=512, learning_rate=5e-3, progress=False, valid_metric="recall_at_20"
    )
    evaluator = Evaluator(topk=(20,), metrics=("recall",))
    torch.manual_seed(0)
    trainer = Trainer(TwoTower(ssl="cfm"), planted_split, cfg, evaluator, dataset=planted)
    trainer.fit()
    learned = trainer.evaluate("test")["recall_at_20"]
    pop = Pop().setup(planted_split.train)
    pop.fit(planted_split.train)
    baseline = evaluator.evaluate(
        pop.scorer(), planted_split.test, exclude=(planted_split.train, planted_split.valid)
    )["recall_at_20"]
    assert learned > baseline + 0.02, (learned, baseline)


# -- scoring, contract, errors ----------------------------------------------------------------


def test_scores_are_cosines_of_the_tower_outputs(planted, planted_split):
    model = _model(planted_split, planted)
    reps = model.representations()
    assert torch.allclose(reps["item"].norm(dim=1), torch.ones(model.n_items), atol=1e-5)
    scores = model.score(torch.arange(4))
    assert torch.allclose(scores, reps["user"][:4] @ reps["item"].T, atol=1e-5)
    assert scores.abs().max() <= 1.0 + 1e-5


def test_id_embeddings_are_read_through_the_module(planted, planted_split):
    model = _model(planted_split, planted, ssl="none")
    names = model.id_embeddings()
    assert names == {"item": "item_embedding", "user": "user_embedding"}
    for attr in names.values():
        assert isinstance(getattr(model, attr), nn.Embedding)

    class Zeros(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.dim = dim

        def forward(self, index: torch.Tensor) -> torch.Tensor:
            return torch.zeros(*index.shape, self.dim)

    before = model.score(torch.arange(3))
    model.item_embedding = Zeros(model.config.feature_dim)
    after = model.score(torch.arange(3))
    assert not torch.allclose(before, after)
    assert torch.isfinite(after).all()
    assert set(_model(planted_split, planted, use_user_id=False, history=True).id_embeddings()) == {
        "item"
    }


def test_bad_feature_names_are_clear_errors(planted, planted_split):
    with pytest.raises(ConfigError, match=r"unknown item feature 'colour'.*model.item_features"):
        TwoTower(item_features=["colour"]).setup(planted_split.train, planted)
    with pytest.raises(ConfigError, match="needs the dataset"):
        TwoTower(item_features=["genre"]).setup(planted_split.train)
    with pytest.raises(ConfigError, match="query tower has no input"):
        TwoTower(use_user_id=False).setup(planted_split.train)
    with pytest.raises(ConfigError, match="model.ssl"):
        TwoTower(ssl="dropout")


def test_repr_and_defaults():
    model = TwoTower()
    assert repr(model).startswith("TwoTower(embedding_size=64, feature_dim=32")
    assert model.config.ssl == "cfm"


@pytest.mark.parametrize("key", ["temperature", "ssl_temperature", "ssl_weight"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_temperatures_and_weights_are_refused(key, value):
    # an infinite temperature makes every logit 0: training would run and learn nothing
    with pytest.raises(ConfigError, match=f"model.{key}"):
        TwoTower(**{key: value})


def _with_item_table(dataset: Dataset, table: FeatureTable) -> Dataset:
    """A copy of ``dataset`` with one more item table, added after the dataset's own checks
    (as a caller that builds feature tables itself would)."""
    import dataclasses

    copy = dataclasses.replace(dataset, item_features=dict(dataset.item_features))
    copy.item_features[table.name] = table
    return copy


def test_bad_feature_values_name_the_feature_and_row(planted, planted_split):
    n = planted.n_items
    codes = np.zeros(n, dtype=np.int64)
    codes[5] = 3  # the vocabulary has three values: 0, 1, 2
    bad = _with_item_table(planted, FeatureTable("colour", "categorical", codes, ["r", "g", "b"]))
    with pytest.raises(
        DataError, match=r"feature 'colour' has code 3 in row 5.*-1 \(missing\) to 2"
    ):
        TwoTower(item_features=["colour"]).setup(planted_split.train, bad)
    values = np.ones((n, 2), dtype=np.float32)
    values[3, 1] = np.nan
    bad = _with_item_table(planted, FeatureTable("price", "dense", values))
    with pytest.raises(
        DataError, match=r"item feature 'price' has a NaN or infinite value in row 3"
    ):
        TwoTower(item_features=["price"]).setup(planted_split.train, bad)
    # missing codes (-1) are fine and get their own embedding
    codes[5] = -1
    ok = _with_item_table(planted, FeatureTable("colour", "categorical", codes, ["r", "g", "b"]))
    TwoTower(item_features=["colour"], ssl="none").setup(planted_split.train, ok)


def test_huge_dense_values_are_standardised_without_overflow(planted, planted_split):
    # values that fit float32 (the readers accept them) but whose squares do not: the float32
    # statistics overflowed, giving NaN (near float32's max) or a column of zeros (1e25)
    n = planted.n_items
    rng = np.random.default_rng(0)
    ordinary = rng.normal(5.0, 2.0, n)
    values = np.stack(
        [np.arange(1, n + 1) * 1e36, np.arange(1, n + 1) * 1e25, np.full(n, 3e38), ordinary], 1
    ).astype(np.float32)
    huge = _with_item_table(planted, FeatureTable("price", "dense", values))
    with np.errstate(all="raise"):  # no overflow warning either
        model = _model(planted_split, huge, item_features=["price"], ssl="cfm")
    x = model.item_encoders["price"].values.numpy()
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x[:, :2].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x[:, :2].std(0), 1.0, rtol=1e-5)
    assert (x[:, 2] == 0).all()  # constant
    # the ordinary column keeps the bits of the float32 standardisation
    with np.errstate(all="ignore"):
        before = (values - values.mean(0)) / values.std(0)
    assert np.array_equal(x[:, 3], before[:, 3])
    terms = model.loss(_batch(planted_split))
    assert all(torch.isfinite(t).all() for t in terms.values())


def test_an_underivable_text_feature_names_the_two_tower_keys(planted, planted_split):
    import dataclasses

    features = {k: v for k, v in planted.item_features.items() if k != "text"}
    no_text = dataclasses.replace(planted, item_features=features)
    with pytest.raises(ConfigError) as info:
        TwoTower(item_features=["text"]).setup(planted_split.train, no_text)
    message = str(info.value)
    assert "model.item_features lists 'text'" in message and "model.text_fields" in message
    assert "model.modalities" not in message  # a key the two-tower model does not have
    # a dataset with a text table lists it once
    with pytest.raises(ConfigError) as info:
        TwoTower(item_features=["colour"]).setup(planted_split.train, planted)
    assert "text (derived)" not in str(info.value)


def test_text_fields_without_a_text_feature_are_reported(planted, planted_split, caplog):
    with caplog.at_level("WARNING", logger="recsys.models.twotower"):
        TwoTower(item_features=["genre"], text_fields=["title"]).setup(planted_split.train, planted)
    assert "model.text_fields=['title'] has no effect" in caplog.text


def test_text_fields_ignored_for_a_text_table_are_reported(planted, planted_split, caplog):
    assert "text" in planted.item_features  # a table: nothing to derive
    with caplog.at_level("WARNING", logger="recsys.models.twotower"):
        TwoTower(item_features=["text"], text_fields=["title"]).setup(planted_split.train, planted)
    # before: silent, the table used and model.text_fields ignored
    assert "model.text_fields=['title'] has no effect" in caplog.text
    assert "has a 'text' table, used as it is" in caplog.text
