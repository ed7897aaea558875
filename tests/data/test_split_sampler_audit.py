"""Splits and samplers on degenerate data: found by an audit, one test per problem."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.dataset import Dataset, Vocabulary
from recsys.data.samplers import HeldOutPairwiseSampler, PairwiseSampler
from recsys.data.split import (
    SplitConfig,
    make_split,
    split_given,
    split_leave_one_out,
    split_ratio,
    split_temporal,
)
from recsys.errors import ConfigError, DataError
from tests.conftest import csr, grid_dataset


@pytest.mark.parametrize("ratios", [(8, 1, 1), (0.5, 0.6, 0.2), (0.0, 0.5, 0.5), (0.8, 0.2)])
@pytest.mark.parametrize("splitter", [split_ratio, split_temporal])
def test_public_splitters_refuse_ratios_that_are_not_shares(splitter, ratios):
    # RecBole writes 8:1:1 as [8, 1, 1]; split_ratio used to put every interaction in test
    ds = grid_dataset(timestamps=np.arange(30.0))
    with pytest.raises(ConfigError, match="split.ratios"):
        splitter(ds, ratios)


@pytest.mark.parametrize("valid_ratio", [1.0, 1.5, -0.1])
def test_split_given_refuses_a_valid_ratio_out_of_range(valid_ratio):
    ds = grid_dataset()
    ds.split_labels = np.where(ds.interactions.indices >= 8, 2, 0).astype(np.int8)
    with pytest.raises(ConfigError, match="split.valid_ratio"):
        split_given(ds, valid_ratio=valid_ratio)


@pytest.mark.parametrize("splitter", [split_temporal, split_leave_one_out])
def test_a_nan_timestamp_is_an_error_not_the_latest_interaction(splitter):
    # lexsort puts NaN last: the interaction silently became a test target
    ts = np.arange(30.0)
    ts[3] = np.nan
    with pytest.raises(DataError, match="user 'u0' with item 'i3' has no timestamp"):
        splitter(grid_dataset(timestamps=ts))


def test_heldout_user_whose_items_are_all_cold_is_left_out_not_an_error():
    # nine users share items 0..9; u9's six items are its own, so when u9 is held out all
    # of its interactions are dropped (no training user has those items); check_split then
    # said u9 had "no training interactions" (for some seeds only)
    users = np.concatenate([np.repeat(np.arange(9), 10), np.full(6, 9)])
    items = np.concatenate([np.tile(np.arange(10), 9), np.arange(10, 16)])
    ds = Dataset.from_arrays(
        "cold",
        Vocabulary([f"u{u}" for u in range(10)], "user"),
        Vocabulary([f"i{i}" for i in range(16)], "item"),
        users,
        items,
    )
    held_u9 = 0
    for seed in range(8):
        split = make_split(
            ds, SplitConfig(strategy="heldout_users", heldout_users=(2, 2), seed=seed)
        )
        if split.train[[9]].nnz == 0:
            held_u9 += 1
            assert split.foldin[[9]].nnz == split.valid[[9]].nnz == split.test[[9]].nnz == 0
    assert held_u9 > 0  # the case was exercised


def _near_full(n_items: int) -> sp.csr_array:
    # user 0 holds every item but the last three; the others hold a few
    return csr([list(range(n_items - 3))] + [[0, 1, 2]] * 20, n_items)


@pytest.mark.parametrize("bitmap_limit", [256 * 2**20, 64, 0])
def test_negatives_of_a_user_holding_nearly_every_item_are_fast_and_uniform(
    bitmap_limit, monkeypatch
):
    # pure rejection needs ~n_items draws per negative for such a user: with 4000 items that
    # was thousands of rounds (seconds per epoch at 20k items); now a bounded number
    n_items = 4000
    sampler = PairwiseSampler(_near_full(n_items), batch_size=512, bitmap_limit=bitmap_limit)
    calls = []
    real = sampler._is_positive
    monkeypatch.setattr(sampler, "_is_positive", lambda u, i: calls.append(1) or real(u, i))
    users = np.zeros(30000, dtype=np.int64)
    neg = sampler.negatives(users, np.random.default_rng(0))
    assert len(calls) <= 100
    counts = np.bincount(neg, minlength=n_items)
    assert counts[: n_items - 3].sum() == 0  # never a positive
    assert np.allclose(counts[n_items - 3 :] / len(neg), 1 / 3, atol=0.02)
    # a whole epoch: every triplet's negative is a non-positive of its user
    dense = _near_full(n_items).toarray() > 0
    for batch in sampler.epoch(np.random.default_rng(1)):
        u, n = batch["user"].numpy(), batch["neg"].numpy()
        assert not dense[u, n].any()


def test_direct_negatives_avoid_held_out_and_seen_items():
    # the held-out sampler's positives are the held-out part; the direct draws must still
    # avoid the union of held-out and seen items
    n_items = 600
    seen = csr([list(range(0, n_items - 4, 2))] + [[0]] * 5, n_items)
    heldout = csr([list(range(1, n_items - 4, 2))] + [[1]] * 5, n_items)
    sampler = HeldOutPairwiseSampler(heldout, seen, batch_size=64, n_negatives=3)
    neg = sampler._direct_negatives(np.zeros(20000, dtype=np.int64), np.random.default_rng(0))
    assert set(np.unique(neg).tolist()) == set(range(n_items - 4, n_items))
    for batch in sampler.epoch(np.random.default_rng(0)):
        assert (batch["neg"][batch["user"] == 0] >= n_items - 4).all()
