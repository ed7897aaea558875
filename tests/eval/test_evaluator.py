"""The full-ranking evaluator: masking, batching, a plain reference, top-k output, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.errors import ConfigError, DataError
from recsys.eval import Evaluator

ALL = (
    "recall",
    "recall_min",
    "precision",
    "hit",
    "mrr",
    "ndcg",
    "map",
    "item_coverage",
    "average_popularity",
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_problem(
    n_users: int = 60, n_items: int = 40, seed: int = 0
) -> tuple[torch.Tensor, sp.csr_array, sp.csr_array, sp.csr_array, np.ndarray]:
    """Scores without ties, train/valid/test matrices (test overlaps train a little), and some
    users with no test items."""
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.permuted(np.tile(np.arange(n_items), (n_users, 1)), axis=1))
    scores = scores.double() + torch.from_numpy(rng.random((n_users, n_items))) * 0.5
    train = sp.csr_array((rng.random((n_users, n_items)) < 0.3).astype(np.float32))
    valid = sp.csr_array((rng.random((n_users, n_items)) < 0.05).astype(np.float32))
    test_dense = rng.random((n_users, n_items)) < 0.15
    test_dense[rng.random(n_users) < 0.2] = False  # ~20% of users have nothing held out
    # one user has almost everything masked, so fewer rankable items than K
    train_dense = train.toarray()
    train_dense[3, :-2] = 1
    test_dense[3, [0, n_items - 1]] = True
    train = sp.csr_array(train_dense)
    test = sp.csr_array(test_dense.astype(np.float32))
    popularity = np.asarray(train.sum(axis=0)).ravel()
    return scores, train, valid, test, popularity


def reference(
    scores: np.ndarray,
    truth: np.ndarray,
    masks: list[np.ndarray],
    popularity: np.ndarray,
    ks: list[int],
) -> dict[str, float]:
    """The metrics written plainly, one user and one rank at a time."""
    n_users, n_items = scores.shape
    masked = np.zeros_like(truth, dtype=bool)
    for m in masks:
        masked |= m != 0
    sums: dict[str, float] = {}
    covered: dict[int, set[int]] = {k: set() for k in ks}
    n_eval = 0
    for u in range(n_users):
        relevant = {i for i in range(n_items) if truth[u, i]}
        if not relevant:
            continue
        n_eval += 1
        order = sorted((i for i in range(n_items) if not masked[u, i]), key=lambda i: -scores[u, i])
        for k in ks:
            top = order[:k]
            hits = [1 if i in relevant else 0 for i in top] + [0] * (k - len(top))
            n_hit = sum(hits)
            values = {
                "recall": n_hit / len(relevant),
                "recall_min": n_hit / min(k, len(relevant)),
                "precision": n_hit / k,
                "hit": float(n_hit > 0),
                "mrr": next((1 / r for r, h in enumerate(hits, 1) if h), 0.0),
                "ndcg": sum(h / math.log2(r + 1) for r, h in enumerate(hits, 1))
                / sum(1 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1)),
                "map": sum(h * sum(hits[:r]) / r for r, h in enumerate(hits, 1))
                / min(len(relevant), k),
                "average_popularity": (
                    sum(float(popularity[i]) for i in top) / len(top) if top else 0.0
                ),
            }
            for name, v in values.items():
                key = f"{name}_at_{k}"
                sums[key] = sums.get(key, 0.0) + v
            covered[k].update(top)
    out = {key: total / n_eval for key, total in sums.items()}
    for k in ks:
        out[f"item_coverage_at_{k}"] = len(covered[k]) / n_items
    out["n_users"] = n_eval
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_plain_reference(seed, device):
    scores, train, valid, test, popularity = random_problem(seed=seed)
    ks = [1, 5, 10, 38, 50]  # 50 > n_items = 40
    ev = Evaluator(topk=ks, metrics=ALL, batch_size=7, device=device)
    scores_dev = scores.to(device)
    got = ev.evaluate(lambda u: scores_dev[u], test, [train, valid], item_popularity=popularity)
    want = reference(
        scores.numpy(), test.toarray(), [train.toarray(), valid.toarray()], popularity, ks
    )
    assert set(got) == set(want)
    assert got["n_users"] == want["n_users"] < test.shape[0]
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_batch_size_does_not_change_results():
    scores, train, _, test, popularity = random_problem(seed=2)
    results = []
    for batch_size in (1, 1000, 13):
        ev = Evaluator(topk=(3, 10), metrics=ALL, batch_size=batch_size)
        results.append(ev.evaluate(lambda u: scores[u], test, [train], item_popularity=popularity))
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        for key in results[0]:
            assert other[key] == pytest.approx(results[0][key], rel=1e-12, abs=1e-15), key


def test_ties_do_not_depend_on_the_batch_and_every_cutoff_is_a_prefix():
    # integer scores in {0, 1, 2}: most of every top-K is decided among tied items
    rng = np.random.default_rng(5)
    n_users, n_items = 41, 300
    scores = torch.from_numpy(rng.integers(0, 3, (n_users, n_items)).astype(np.float32))
    truth = sp.csr_array((rng.random((n_users, n_items)) < 0.1).astype(np.float32))
    train = sp.csr_array((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    popularity = np.bincount(train.indices, minlength=n_items)
    runs = []
    for kwargs in ({"batch_size": 1}, {"batch_size": 7}, {"batch_size": 4096}, {"memory_mb": 0.01}):
        ev = Evaluator(topk=(5, 20), metrics=ALL, item_slices=True, **kwargs)
        result, table = ev.evaluate(
            lambda u: scores[u], truth, [train], item_popularity=popularity, per_user=True
        )
        items, _ = ev.topk(lambda u: scores[u], np.arange(n_users), 20, [train])
        runs.append((result, table, items))
    result0, table0, items0 = runs[0]
    for result, table, items in runs[1:]:
        np.testing.assert_array_equal(items, items0)
        assert result == pytest.approx(result0, rel=1e-12, abs=1e-15)
        for key in table0:
            np.testing.assert_allclose(table[key], table0[key], rtol=1e-12, err_msg=key)
    # the top-5 evaluated is the prefix of the one top-20 list
    dense = truth.toarray() > 0
    users = table0["user"]
    hits_top5 = np.take_along_axis(dense[users], items0[users, :5], axis=1).sum(axis=1)
    np.testing.assert_allclose(table0["precision_at_5"], hits_top5 / 5)
    assert (table0["recall_at_5"] <= table0["recall_at_20"]).all()


def test_masked_items_never_recommended():
    scores, train, valid, _, _ = random_problem(seed=3)
    ev = Evaluator(batch_size=16)
    users = np.arange(scores.shape[0])
    items, values = ev.topk(lambda u: scores[u], users, 20, exclude=[train, valid])
    masked = (train + valid).toarray() > 0
    for u in users:
        real = items[u][items[u] >= 0]
        assert not masked[u, real].any()
        # every unmasked item beats nothing, so the list is full unless the user ran out
        assert len(real) == min(20, int((~masked[u]).sum()))
    # user 3 has two rankable items: the rest is padding
    assert (items[3, 2:] == -1).all()
    assert np.isneginf(values[3, 2:]).all()


def test_masked_truth_items_are_not_hits():
    # item 0 is both held out and a training item: it is masked, so never a hit
    scores = torch.tensor([[5.0, 1.0, 0.0]])
    truth = sp.csr_array(np.array([[1, 0, 0]]))
    train = sp.csr_array(np.array([[1, 0, 0]]))
    r = Evaluator(topk=(1, 3), metrics=("hit", "recall")).evaluate(
        lambda u: scores[u], truth, [train]
    )
    assert r == {"hit_at_1": 0.0, "hit_at_3": 0.0, "recall_at_1": 0.0, "recall_at_3": 0.0,
                 "n_users": 1}  # fmt: skip


def test_users_without_truth_are_skipped_and_never_scored():
    seen: list[int] = []
    scores = torch.rand(5, 4)

    def fn(users: torch.Tensor) -> torch.Tensor:
        seen.extend(users.tolist())
        return scores[users]

    truth = sp.csr_array(np.array([[0, 1, 0, 0], [0] * 4, [1, 0, 0, 1], [0] * 4, [0] * 4]))
    result = Evaluator(topk=(2,), batch_size=1).evaluate(fn, truth)
    assert result["n_users"] == 2
    assert seen == [0, 2]


def test_no_users_to_evaluate():
    truth = sp.csr_array((3, 4))
    ev = Evaluator(topk=(2,), metrics=("recall", "item_coverage"))
    result = ev.evaluate(lambda u: torch.zeros(len(u), 4), truth)
    assert result["n_users"] == 0
    assert math.isnan(result["recall_at_2"])
    assert result["item_coverage_at_2"] == 0.0


def test_average_popularity_needs_popularity():
    scores, train, _, test, popularity = random_problem(seed=4)
    ev = Evaluator(topk=(5,))
    without = ev.evaluate(lambda u: scores[u], test, [train])
    assert "average_popularity_at_5" not in without
    with_pop = ev.evaluate(lambda u: scores[u], test, [train], item_popularity=popularity)
    assert "average_popularity_at_5" in with_pop
    with pytest.raises(DataError, match="item_popularity"):
        ev.evaluate(lambda u: scores[u], test, [train], item_popularity=popularity[:-1])


def test_duplicate_truth_entries_are_merged():
    # a COO with a repeated (user, item) pair: |G| must be 1, not 2
    truth = sp.csr_array(sp.coo_array((np.ones(2), ([0, 0], [1, 1])), shape=(1, 3)))
    scores = torch.tensor([[0.0, 1.0, 2.0]])
    r = Evaluator(topk=(2,), metrics=("recall",)).evaluate(lambda u: scores[u], truth)
    assert r["recall_at_2"] == 1.0


def test_scores_held_by_caller_are_not_modified():
    cache = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    before = cache.clone()
    train = sp.csr_array(np.ones((3, 4)))
    truth = sp.csr_array(np.eye(3, 4))
    # a slice of a cache is a view: the evaluator must clone it before masking
    Evaluator(topk=(2,), batch_size=3).evaluate(lambda u: cache[: len(u)], truth, [train])
    assert torch.equal(cache, before)


def test_topk_output():
    scores = torch.tensor(
        [
            [0.1, 0.9, 0.5, 0.7],
            [4.0, 3.0, 2.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],
        ]
    )
    train = sp.csr_array(np.array([[0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]]))
    ev = Evaluator(batch_size=2)
    items, values = ev.topk(lambda u: scores[u], np.array([0, 1, 2, 0]), 3, exclude=[train])
    np.testing.assert_array_equal(items, [[3, 2, 0], [0, 1, 2], [3, -1, -1], [3, 2, 0]])
    np.testing.assert_allclose(
        values,
        [[0.7, 0.5, 0.1], [4.0, 3.0, 2.0], [1.0, -np.inf, -np.inf], [0.7, 0.5, 0.1]],
        rtol=1e-6,
    )
    assert items.dtype == np.int64 and values.dtype == np.float32
    # no exclude matrices; k larger than the catalogue pads
    items, values = ev.topk(lambda u: scores[u], np.array([1]), 6)
    np.testing.assert_array_equal(items, [[0, 1, 2, 3, -1, -1]])
    empty_items, empty_values = ev.topk(lambda u: scores[u], np.array([], dtype=int), 2)
    assert empty_items.shape == (0, 2) and empty_values.shape == (0, 2)


def test_bad_inputs():
    scores = torch.rand(3, 4)
    truth = sp.csr_array(np.eye(3, 4))
    ev = Evaluator(topk=(2,), metrics=("recall",))
    with pytest.raises(ValueError, match=r"shape \(3, 5\)"):
        ev.evaluate(lambda u: torch.rand(len(u), 5), truth)
    with pytest.raises(DataError, match=r"exclude\[1\]"):
        ev.evaluate(lambda u: scores[u], truth, [truth, sp.csr_array((3, 5))])
    with pytest.raises(DataError, match="truth"):
        ev.evaluate(lambda u: scores[u], np.eye(3, 4))
    nan_scores = scores.clone()
    nan_scores[1, 2] = math.nan
    with pytest.raises(ValueError, match="NaN scores for 1 of 3 users"):
        ev.evaluate(lambda u: nan_scores[u], truth)
    with pytest.raises(ValueError, match="NaN"):
        ev.topk(lambda u: nan_scores[u], np.array([1]), 2)
    with pytest.raises(DataError, match="out of range"):
        ev.topk(lambda u: scores[u], np.array([7]), 2, exclude=[truth])


def test_repr_and_cutoffs():
    ev = Evaluator(topk=(20, 10, 20), metrics=("ndcg", "recall"), batch_size=8)
    assert ev.cutoffs == (10, 20)
    assert repr(ev) == (
        "Evaluator(topk=[10, 20], metrics=['ndcg', 'recall'], batch_size=8, device='cpu', "
        "memory_mb=None)"
    )


def test_memory_budget_shrinks_batches_without_changing_results() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 500
    truth = sp.csr_array((rng.random((n_users, n_items)) < 0.02).astype(np.float32))
    train = sp.csr_array((rng.random((n_users, n_items)) < 0.05).astype(np.float32))
    emb_u, emb_i = torch.randn(n_users, 8), torch.randn(n_items, 8)
    calls: list[int] = []

    def score(users: torch.Tensor) -> torch.Tensor:
        calls.append(len(users))
        return emb_u[users] @ emb_i.T

    whole = Evaluator(topk=(5, 10)).evaluate(score, truth, [train])
    assert max(calls) == n_users
    calls.clear()
    # 0.5 MB / (500 items x 12 bytes) = 87 users per batch
    budget = Evaluator(topk=(5, 10), memory_mb=0.5)
    assert budget.user_batch(n_items) == 87
    result = budget.evaluate(score, truth, [train])
    assert max(calls) == 87
    assert result == pytest.approx(whole)
    with pytest.raises(ConfigError, match="memory_mb"):
        Evaluator(memory_mb=0)


def test_topk_without_exclusions_keeps_to_the_memory_budget():
    # 1000 items x 12 bytes a cell: a 0.05 MB budget fits 4 users per batch; the catalogue
    # size is only known from the first scores, which must not be a full batch_size block
    rng = np.random.default_rng(0)
    table = torch.from_numpy(rng.standard_normal((50, 1000)).astype(np.float32))
    sizes: list[int] = []

    def score(users: torch.Tensor) -> torch.Tensor:
        sizes.append(len(users))
        return table[users]

    budget = Evaluator(topk=(5,), batch_size=4096, memory_mb=0.05)
    items, _ = budget.topk(score, np.arange(50), 5)
    assert max(sizes) <= budget.user_batch(1000) == 4
    assert sum(sizes) == 50
    expected, _ = Evaluator(topk=(5,)).topk(lambda u: table[u], np.arange(50), 5)
    np.testing.assert_array_equal(items, expected)


def test_equal_scores_rank_by_item_index_whatever_the_other_cutoffs():
    # scores in {0, 1, 2} over 300 items: every cut runs through a group of equal scores
    rng = np.random.default_rng(1)
    table = torch.from_numpy(rng.integers(0, 3, size=(40, 300)).astype(np.float32))
    truth = sp.csr_array(rng.random((40, 300)) < 0.05, dtype=np.float32)
    train = sp.csr_array(rng.random((40, 300)) < 0.1, dtype=np.float32)
    train = sp.csr_array(train - train.multiply(truth))

    def score(users: torch.Tensor) -> torch.Tensor:
        return table[users].clone()

    alone = Evaluator(topk=(5,)).evaluate(score, truth, [train])
    with_more = Evaluator(topk=(5, 20, 50)).evaluate(score, truth, [train])
    for name, value in alone.items():
        if name.endswith("_at_5"):
            assert with_more[name] == pytest.approx(value, abs=1e-12), name
    items, _ = Evaluator(topk=(50,)).topk(score, np.arange(40), 50, [train])
    # the total order: score descending, then item index ascending
    masked = table.numpy().copy()
    masked[train.toarray() > 0] = -np.inf
    expected = np.lexsort((np.arange(300)[None, :].repeat(40, 0), -masked), axis=1)[:, :50]
    np.testing.assert_array_equal(items, expected)
