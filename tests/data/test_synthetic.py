"""Synthetic data: exact sizes, planted structure, popularity, modalities, noise flags."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data.synthetic import make_synthetic, parse_synthetic_name, planted_factors
from recsys.errors import ConfigError


def test_sizes_and_floor() -> None:
    ds = make_synthetic(400, 300, 12000, seed=1)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (400, 300, 12000)
    assert ds.name == "synthetic-400x300x12000"
    assert np.diff(ds.interactions.indptr).min() >= 5
    assert ds.ratings.tolist() == [1.0] * 12000  # no label noise: every interaction clean
    assert list(ds.users.ids[:3]) == ["0", "1", "2"]


def test_seeded() -> None:
    a = make_synthetic(100, 80, 2000, seed=4)
    b = make_synthetic(100, 80, 2000, seed=4)
    c = make_synthetic(100, 80, 2000, seed=5)
    assert (a.interactions != b.interactions).nnz == 0
    np.testing.assert_array_equal(a.item_features["text"].values, b.item_features["text"].values)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert (a.interactions != c.interactions).nnz > 0


def test_choices_follow_planted_factors() -> None:
    n_users, n_items = 300, 400
    ds = make_synthetic(n_users, n_items, 9000, popularity_exponent=0.0, seed=2)
    user_f, item_f, _ = planted_factors(n_users, n_items, popularity_exponent=0.0, seed=2)
    users, items = ds.coo()
    chosen = np.einsum("ij,ij->i", user_f[users], item_f[items]).mean()
    overall = (user_f @ item_f.T).mean()
    assert chosen > overall + 0.5  # affinities have unit variance


def test_popularity_exponent_skews_items() -> None:
    def top_share(exponent: float) -> float:
        ds = make_synthetic(500, 500, 10000, popularity_exponent=exponent, seed=3)
        counts = np.sort(np.bincount(ds.interactions.indices, minlength=500))[::-1]
        return counts[:50].sum() / counts.sum()

    flat, skewed = top_share(0.0), top_share(1.0)
    assert flat < 0.25 and skewed > 0.4
    _, _, log_pop = planted_factors(500, 500, popularity_exponent=1.0, seed=3)
    ds = make_synthetic(500, 500, 10000, popularity_exponent=1.0, seed=3)
    counts = np.bincount(ds.interactions.indices, minlength=500)
    assert np.corrcoef(log_pop, np.log1p(counts))[0, 1] > 0.7


def test_modalities_carry_item_factors() -> None:
    ds = make_synthetic(100, 300, 3000, modalities={"text": 16, "image": 4}, modality_noise=0.05)
    _, item_f, _ = planted_factors(100, 300)
    for key, width in (("text", 16), ("image", 4)):
        feat = ds.item_features[key]
        assert feat.kind == "dense" and feat.values.shape == (300, width)
        assert feat.values.dtype == np.float32
    # text (16 > 8 factors) is a noisy linear map of the factors: they explain most of it
    text = ds.item_features["text"].values
    coef, *_ = np.linalg.lstsq(item_f, text, rcond=None)
    residual = text - item_f @ coef
    assert 1 - residual.var() / text.var() > 0.95
    assert make_synthetic(10, 10, 50, modalities={}).item_features.keys() == {"genre"}


def test_genre_tokens_mark_extreme_factors() -> None:
    ds = make_synthetic(50, 200, 1000, n_factors=4)
    _, item_f, _ = planted_factors(50, 200, n_factors=4)
    genre = ds.item_features["genre"]
    assert genre.vocab == ["f0+", "f0-", "f1+", "f1-", "f2+", "f2-", "f3+", "f3-"]
    z = (item_f - item_f.mean(0)) / item_f.std(0)
    dense = genre.values.toarray()
    np.testing.assert_array_equal(dense[:, 0], z[:, 0] > 1)
    np.testing.assert_array_equal(dense[:, 7], z[:, 3] < -1)


def test_label_noise_flags() -> None:
    n_users, n_items = 300, 1000
    ds = make_synthetic(n_users, n_items, 6000, label_noise=0.2, temperature=0.25, seed=5)
    noisy = ds.ratings == 0.0
    assert set(np.unique(ds.ratings)) == {0.0, 1.0}
    assert noisy.sum() == 1200  # sparse enough that every noisy draw finds a free item
    user_f, item_f, _ = planted_factors(n_users, n_items, seed=5)
    users, items = ds.coo()
    affinity = np.einsum("ij,ij->i", user_f[users], item_f[items])
    assert affinity[~noisy].mean() > affinity[noisy].mean() + 0.5
    assert ds.n_interactions == 6000


def test_timestamps_distinct_within_user() -> None:
    ds = make_synthetic(50, 60, 800, seed=6)
    users, _ = ds.coo()
    assert np.all(np.isfinite(ds.timestamps)) and ds.timestamps.min() >= 1.5e9
    for u in range(0, 50, 7):  # a few users are enough
        t = ds.timestamps[users == u]
        assert len(np.unique(t)) == len(t)
    assert make_synthetic(10, 10, 50, timestamps=False).timestamps is None


def test_dense_and_skewed_cases_are_exact() -> None:
    # pools cover most items -> exact Gumbel top-k over every item
    ds = make_synthetic(30, 20, 500, seed=7)
    assert ds.n_interactions == 500 and np.diff(ds.interactions.indptr).max() <= 20
    # a steep popularity makes pools repeat items; short users are retried with bigger pools
    ds = make_synthetic(200, 5000, 20000, popularity_exponent=3.0, seed=8)
    assert ds.n_interactions == 20000 and np.diff(ds.interactions.indptr).min() >= 5
    # every user holds every item
    ds = make_synthetic(5, 8, 40, seed=9)
    assert ds.interactions.toarray().min() == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_users": 10, "n_items": 5, "n_interactions": 51}, "do not fit in 10 users x 5 items"),
        ({"n_users": 10, "n_items": 50, "n_interactions": 40}, "at least 5 each"),
        ({"n_users": 0, "n_items": 5, "n_interactions": 5}, "must be positive"),
        ({"temperature": 0.0}, "temperature must be positive"),
        ({"label_noise": 1.0}, r"label_noise must be in \[0, 1\)"),
        ({"modalities": {"text": 0}}, r"modalities\['text'\] must be a positive width"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_synthetic(**kwargs)


def test_parse_synthetic_name() -> None:
    assert parse_synthetic_name("synthetic") == (1000, 500, 20000)
    assert parse_synthetic_name("synthetic-2000x1000x50000") == (2000, 1000, 50000)
    assert parse_synthetic_name("synthetic-2000x1000") is None
    assert parse_synthetic_name("ml-100k") is None


def test_parse_synthetic_name_has_one_spelling_per_dataset() -> None:
    # a trailing newline, surrounding spaces or non-ASCII digits are not a synthetic name
    assert parse_synthetic_name("synthetic-10x10x50\n") is None
    assert parse_synthetic_name(" synthetic-10x10x50") is None
    assert parse_synthetic_name("synthetic-\u0661\u0660x10x50") is None
    with pytest.raises(ConfigError, match="'synthetic-10x10x50'"):
        parse_synthetic_name("synthetic-010x10x50")
    assert parse_synthetic_name("synthetic-0x10x50") == (0, 10, 50)  # refused by its size


def test_absurd_sizes_are_refused_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.data.synthetic as synthetic

    def no_allocation(*args: object, **kwargs: object) -> None:
        raise AssertionError("allocated before the sizes were checked")

    monkeypatch.setattr(synthetic, "planted_factors", no_allocation)
    with pytest.raises(ConfigError, match=r"at least 5 each"):
        make_synthetic(10**20, 10, 10)
    with pytest.raises(ConfigError, match=r"'synthetic-1000000000x1000000000x5000000000'.*2\*\*31"):
        make_synthetic(10**9, 10**9, 5 * 10**9)
    monkeypatch.setattr(synthetic, "_physical_memory", lambda: 2**30)
    with pytest.raises(
        ConfigError, match=r"'big' would need about .* GiB of memory, more than .* 1\.0 GiB"
    ):
        make_synthetic(1_000_000, 1000, 20_000_000, name="big")
