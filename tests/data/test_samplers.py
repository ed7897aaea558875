import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.samplers import (
    HeldOutPairwiseSampler,
    PairSampler,
    PairwiseSampler,
    PointwiseSampler,
    UserRowSampler,
    _test_bits,
    make_sampler,
)
from recsys.errors import DataError
from tests.conftest import csr


def test_pairwise_negatives_are_never_positives(planted_split):
    train = planted_split.train
    sampler = PairwiseSampler(train, batch_size=512)
    dense = train.toarray() > 0
    seen = 0
    for batch in sampler.epoch(np.random.default_rng(0)):
        u, p, n = (batch[k].numpy() for k in ("user", "pos", "neg"))
        assert dense[u, p].all()
        assert not dense[u, n].any()
        seen += len(u)
    assert seen == train.nnz
    assert len(sampler) == int(np.ceil(train.nnz / 512))


def test_held_out_triplets_cover_the_held_out_part_and_avoid_every_known_item(planted_split):
    valid, train = planted_split.valid, planted_split.train
    sampler = HeldOutPairwiseSampler(valid, train, batch_size=256)
    held, known = valid.toarray() > 0, (valid + train).toarray() > 0
    pairs = []
    for batch in sampler.epoch(np.random.default_rng(0)):
        u, p, n = (batch[k].numpy() for k in ("user", "pos", "neg"))
        assert held[u, p].all()
        assert not known[u, n].any()
        pairs += list(zip(u.tolist(), p.tolist(), strict=True))
    assert len(pairs) == valid.nnz == len(set(pairs))


def test_pairwise_negatives_are_uniform_over_non_positives():
    # user 0 owns items 0 and 1 of 5: negatives must be uniform over {2, 3, 4}
    train = csr([[0, 1]], 5)
    sampler = PairwiseSampler(train, batch_size=10)
    draws = sampler.negatives(np.zeros(30000, dtype=np.int64), np.random.default_rng(1))
    freq = np.bincount(draws, minlength=5) / len(draws)
    assert freq[:2].sum() == 0
    assert np.allclose(freq[2:], 1 / 3, atol=0.015)


def test_pairwise_several_negatives_shape(planted_split):
    sampler = PairwiseSampler(planted_split.train, batch_size=64, n_negatives=4)
    batch = next(sampler.epoch(np.random.default_rng(0)))
    assert batch["neg"].shape == (64, 4)


def test_pairwise_rejects_user_with_every_item():
    with pytest.raises(DataError, match="every item"):
        PairwiseSampler(csr([[0, 1, 2]], 3), batch_size=4)


@pytest.mark.parametrize("n_negatives", [1, 3])
def test_pointwise_examples_are_labelled_positives_and_fresh_negatives(planted_split, n_negatives):
    train = planted_split.train
    sampler = make_sampler("pointwise", train, 512, n_negatives=n_negatives)
    assert isinstance(sampler, PointwiseSampler) and sampler.kind == "pointwise"
    dense = train.toarray() > 0
    total = train.nnz * (1 + n_negatives)
    assert len(sampler) == int(np.ceil(total / 512))

    def epoch(seed):
        batches = list(sampler.epoch(np.random.default_rng(seed)))
        assert all(len(b["user"]) == 512 for b in batches[:-1])
        return {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}

    first = epoch(0)
    u, i, y = first["user"], first["item"], first["label"]
    assert first["label"].dtype == np.float32 and first["user"].dtype == np.int64
    assert len(u) == total and set(np.unique(y).tolist()) == {0.0, 1.0}
    # label 1: each training interaction exactly once; label 0: never a training item
    pos = y == 1
    assert dense[u[pos], i[pos]].all()
    assert len(set(zip(u[pos].tolist(), i[pos].tolist(), strict=True))) == train.nnz
    assert not dense[u[~pos], i[~pos]].any()
    # n negatives per positive, for the same users
    assert np.array_equal(
        np.bincount(u[~pos], minlength=train.shape[0]),
        n_negatives * np.bincount(u[pos], minlength=train.shape[0]),
    )
    # positives and negatives are shuffled together: a batch mixes them in proportion
    first_batch = next(sampler.epoch(np.random.default_rng(0)))["label"]
    share = float(first_batch.mean())
    assert abs(share - 1 / (1 + n_negatives)) < 0.1
    # a new epoch draws new negatives
    again = epoch(1)
    neg_a = sorted(zip(u[~pos].tolist(), i[~pos].tolist(), strict=True))
    neg_b = sorted(
        zip(
            again["user"][again["label"] == 0].tolist(),
            again["item"][again["label"] == 0].tolist(),
            strict=True,
        )
    )
    assert neg_a != neg_b


def test_pointwise_rejects_user_with_every_item():
    with pytest.raises(DataError, match="every item"):
        PointwiseSampler(csr([[0, 1, 2]], 3), batch_size=4)


def test_pair_and_row_samplers(planted_split):
    train = planted_split.train
    pairs = list(PairSampler(train, 100).epoch(np.random.default_rng(0)))
    assert sum(len(b["user"]) for b in pairs) == train.nnz
    rows = list(UserRowSampler(train, 50).epoch(np.random.default_rng(0)))
    users = np.concatenate([b["user"].numpy() for b in rows])
    assert sorted(users.tolist()) == np.flatnonzero(np.diff(train.indptr)).tolist()
    first = rows[0]
    assert np.array_equal(first["rows"].numpy(), train[first["user"].numpy()].toarray())


def test_same_seed_same_epoch(planted_split):
    sampler = make_sampler("pairwise", planted_split.train, 256)
    a = next(sampler.epoch(np.random.default_rng(5)))
    b = next(sampler.epoch(np.random.default_rng(5)))
    assert all((a[k] == b[k]).all() for k in a)


def test_bitmap_and_binary_search_membership_agree(planted_split):
    train = planted_split.train
    with_bitmap = PairwiseSampler(train, 64)
    without = PairwiseSampler(train, 64, bitmap_limit=0)
    assert with_bitmap.bitmap is not None and without.bitmap is None
    rng = np.random.default_rng(3)
    users = rng.integers(0, train.shape[0], 5000)
    items = rng.integers(0, train.shape[1], 5000)
    expected = train.toarray()[users, items] > 0
    assert np.array_equal(with_bitmap._is_positive(users, items), expected)
    assert np.array_equal(without._is_positive(users, items), expected)


@pytest.mark.parametrize("limit", [16, 1024, None])
def test_hashed_filter_membership_is_exact(planted_split, limit):
    """Where the full bitmap does not fit, the hashed filter only prefilters: answers stay exact
    for filters from tiny (mostly collisions) to just under the full bitmap's size."""
    train = planted_split.train
    full_bytes = (train.shape[0] * train.shape[1] + 7) // 8
    sampler = PairwiseSampler(train, 64, bitmap_limit=full_bytes - 1 if limit is None else limit)
    assert sampler.bitmap is None and sampler.key_filter is not None
    rng = np.random.default_rng(4)
    users = rng.integers(0, train.shape[0], 20000)
    items = rng.integers(0, train.shape[1], 20000)
    dense = train.toarray() > 0
    assert np.array_equal(sampler._is_positive(users, items), dense[users, items])
    # every positive passes the filter (no false negatives)
    rows, cols = train.nonzero()
    assert _bits_set(sampler, rows.astype(np.int64) * train.shape[1] + cols).all()


def test_hashed_filter_rejects_most_non_positives():
    """On sparse data the filter gets 32-64 bits per positive (52 here, rounded up to a power
    of two): a few percent of non-positive queries reach the binary search."""
    rng = np.random.default_rng(0)
    n_users, n_items, nnz = 2000, 5000, 5000
    rows, cols = rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz)
    train = sp.csr_array((np.ones(nnz, np.float32), (rows, cols)), shape=(n_users, n_items))
    train.sum_duplicates()
    train.data[:] = 1
    sampler = PairwiseSampler(train, 64, bitmap_limit=100_000)
    assert sampler.bitmap is None and sampler.key_filter is not None
    users = rng.integers(0, n_users, 100_000)
    items = rng.integers(0, n_items, 100_000)
    dense = train.toarray() > 0
    assert np.array_equal(sampler._is_positive(users, items), dense[users, items])
    negative = ~dense[users, items]
    passed = _bits_set(sampler, users[negative] * n_items + items[negative]).mean()
    assert 0.0 < passed < 0.04


def _bits_set(sampler: PairwiseSampler, keys: np.ndarray) -> np.ndarray:
    return _test_bits(sampler.key_filter, sampler._hash(keys))


def _scrambled(train: sp.csr_array, seed: int = 0) -> sp.csr_array:
    """``train`` with each row's column indices in random order and its first entry stored
    twice: a valid CSR matrix, but not in canonical form."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(train.shape[0]), np.diff(train.indptr))
    order = np.lexsort((rng.random(train.nnz), rows))
    first = train.indptr[:-1][np.diff(train.indptr) > 0]
    cols = np.concatenate([train.indices[order], train.indices[first]])
    all_rows = np.concatenate([rows, rows[first]])
    order = np.argsort(all_rows, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(all_rows, minlength=train.shape[0]))])
    out = sp.csr_array((np.ones(len(cols), np.float32), cols[order], indptr), shape=train.shape)
    assert not out.has_sorted_indices and out.nnz > train.nnz
    return out


@pytest.mark.parametrize("bitmap_limit", [256 * 2**20, 64, 0])
def test_pairwise_sampler_on_a_non_canonical_matrix(planted_split, bitmap_limit):
    """Unsorted column indices and duplicate entries: negatives still avoid every positive on
    all three membership paths (bitmap, hashed filter, binary search), and each interaction
    comes once per epoch."""
    train = planted_split.train
    sampler = PairwiseSampler(_scrambled(train), batch_size=128, bitmap_limit=bitmap_limit)
    dense = train.toarray() > 0
    pairs = []
    for batch in sampler.epoch(np.random.default_rng(0)):
        u, p, n = (batch[k].numpy() for k in ("user", "pos", "neg"))
        assert dense[u, p].all()
        assert not dense[u, n].any()
        pairs += list(zip(u.tolist(), p.tolist(), strict=True))
    assert len(pairs) == train.nnz == len(set(pairs))
    assert len(sampler) == int(np.ceil(train.nnz / 128))


def test_pair_and_row_samplers_on_a_non_canonical_matrix(planted_split):
    train = planted_split.train
    scrambled = _scrambled(train, seed=1)
    pairs = [
        (u, i)
        for b in PairSampler(scrambled, 100).epoch(np.random.default_rng(0))
        for u, i in zip(b["user"].tolist(), b["item"].tolist(), strict=True)
    ]
    assert len(pairs) == train.nnz == len(set(pairs))
    # a row block holds the matrix's values (duplicates summed, as scipy reads them)
    rows = next(UserRowSampler(scrambled, 50).epoch(np.random.default_rng(0)))
    assert np.array_equal(rows["rows"].numpy(), scrambled[rows["user"].numpy()].toarray())
