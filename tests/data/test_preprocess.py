"""Preprocessing: rating threshold, k-core to a fixed point, dedup policy, empty results."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data.dataset import Dataset, Vocabulary
from recsys.data.preprocess import (
    PreprocessConfig,
    binarize,
    deduplicate,
    kcore,
    kcore_mask,
    preprocess,
)
from recsys.errors import DataError


def make(pairs: list[tuple[int, int]], ratings: list[float] | None = None) -> Dataset:
    users = np.array([p[0] for p in pairs])
    items = np.array([p[1] for p in pairs])
    return Dataset.from_arrays(
        "toy",
        Vocabulary([f"u{k}" for k in range(users.max() + 1)], "user"),
        Vocabulary([f"i{k}" for k in range(items.max() + 1)], "item"),
        users,
        items,
        ratings=None if ratings is None else np.asarray(ratings, dtype=float),
    )


def raw_pairs(ds: Dataset) -> set[tuple[str, str]]:
    users, items = ds.coo()
    return set(zip(ds.users.raw(users).tolist(), ds.items.raw(items).tolist(), strict=True))


def test_binarize_keeps_ratings_at_or_above_threshold() -> None:
    ds = make([(0, 0), (0, 1), (1, 1), (1, 2)], ratings=[5, 3, 4, 1])
    out = binarize(ds, 4)
    assert raw_pairs(out) == {("u0", "i0"), ("u1", "i1")}
    assert out.ratings.tolist() == [5.0, 4.0]
    assert list(out.items.ids) == ["i0", "i1"]  # i2 lost its only interaction


def test_binarize_errors() -> None:
    with pytest.raises(DataError, match=r"toy: rating_threshold=4 needs ratings"):
        binarize(make([(0, 0)]), 4)
    ds = make([(0, 0), (1, 1)], ratings=[1, 2.5])
    with pytest.raises(
        DataError,
        match=r"toy: rating_threshold=6 removed every interaction \(ratings range from 1 to 2\.5\)",
    ):
        binarize(ds, 6)


def test_kcore_cascades_to_fixed_point() -> None:
    # u2 has 1 interaction -> removed; then i2 drops to 1 -> removed; then u1 drops to 1 ...
    pairs = [(0, 0), (0, 1), (1, 0), (1, 2), (2, 2), (3, 0), (3, 1)]
    ds = make(pairs)
    out = kcore(ds, min_user=2, min_item=2)
    assert raw_pairs(out) == {("u0", "i0"), ("u0", "i1"), ("u3", "i0"), ("u3", "i1")}
    per_user = np.diff(out.interactions.indptr)
    per_item = np.bincount(out.interactions.indices, minlength=out.n_items)
    assert per_user.min() >= 2 and per_item.min() >= 2


def _kcore_reference(users: np.ndarray, items: np.ndarray, mu: int, mi: int) -> np.ndarray:
    """Plain-Python k-core, one element at a time (the definition, slowly)."""
    alive = [True] * len(users)
    changed = True
    while changed:
        changed = False
        uc: dict[int, int] = {}
        ic: dict[int, int] = {}
        for k, ok in enumerate(alive):
            if ok:
                uc[users[k]] = uc.get(users[k], 0) + 1
                ic[items[k]] = ic.get(items[k], 0) + 1
        for k, ok in enumerate(alive):
            if ok and (uc[users[k]] < mu or ic[items[k]] < mi):
                alive[k] = False
                changed = True
    return np.array(alive)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcore_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 40, 300)
    items = np.minimum(rng.zipf(1.6, 300) - 1, 59)
    ds = make(list(zip(users.tolist(), items.tolist(), strict=True)))
    u, i = ds.coo()
    expected = _kcore_reference(u, i, 4, 3)
    np.testing.assert_array_equal(kcore_mask(ds, 4, 3), expected)


def test_kcore_no_op_and_errors() -> None:
    ds = make([(0, 0), (1, 1)])
    assert kcore(ds, 1, 1) is ds
    with pytest.raises(
        DataError,
        match=r"toy: the k-core filter \(min_user_interactions=2, min_item_interactions=0\) "
        r"removed every",
    ):
        kcore(ds, 2, 0)
    with pytest.raises(DataError, match=r"k-core bounds must be >= 0"):
        kcore(ds, -1, 0)


def test_deduplicate_positions() -> None:
    users = np.array([0, 0, 1, 0, 1])
    items = np.array([5, 6, 5, 5, 5])
    assert deduplicate(users, items, "last").tolist() == [1, 3, 4]
    assert deduplicate(users, items, "first").tolist() == [0, 1, 2]
    assert deduplicate(users[:0], items[:0]).tolist() == []
    with pytest.raises(DataError, match="keep must be 'last' or 'first'"):
        deduplicate(users, items, "middle")  # type: ignore[arg-type]


def test_preprocess_threshold_then_kcore() -> None:
    # with the threshold first, u1 keeps a single rating >= 4 and then fails the 2-core
    ds = make([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)], ratings=[5, 5, 5, 2, 4, 4])
    out = preprocess(ds, PreprocessConfig(rating_threshold=4, min_user_interactions=2))
    assert raw_pairs(out) == {("u0", "i0"), ("u0", "i1"), ("u2", "i0"), ("u2", "i1")}
    assert preprocess(ds, PreprocessConfig()) is ds


def test_preprocess_names_the_filter_that_emptied_it() -> None:
    ds = make([(0, 0), (1, 1)], ratings=[5, 5])
    with pytest.raises(DataError, match="k-core filter"):
        preprocess(ds, PreprocessConfig(min_item_interactions=2))
    with pytest.raises(DataError, match="rating_threshold=9"):
        preprocess(ds, PreprocessConfig(rating_threshold=9, min_item_interactions=2))


def test_preprocess_config_validates() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        PreprocessConfig(min_user_interactions=-1)
    with pytest.raises(ValueError, match="Extra inputs"):
        PreprocessConfig(min_users=3)  # type: ignore[call-arg]
