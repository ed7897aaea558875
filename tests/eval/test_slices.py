"""Head/tail item slices of the evaluator, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsys.config import build_run_config
from recsys.errors import ConfigError
from recsys.eval.evaluator import Evaluator, tail_items
from tests.conftest import csr

# training popularity of 6 items: 20 interactions in all
POPULARITY = np.array([10, 0, 1, 5, 4, 0])


def test_tail_holds_at_most_the_share_of_interactions():
    # ascending: items 1 (0), 5 (0), 2 (1), 4 (4), 3 (5), 0 (10); cumulative 0, 0, 1, 5, ...
    # 20% of 20 = 4 interactions: items 1, 5, 2 (1 interaction); adding item 4 makes 5 > 4
    assert np.flatnonzero(tail_items(POPULARITY, 0.2)).tolist() == [1, 2, 5]
    # 25% = 5 interactions: item 4 fits exactly
    assert np.flatnonzero(tail_items(POPULARITY, 0.25)).tolist() == [1, 2, 4, 5]
    assert not tail_items(POPULARITY, 0.0)[[0, 2, 3, 4]].any()  # unseen items only
    assert tail_items(POPULARITY, 1.0).all()


def test_tail_as_a_fraction_of_items():
    assert np.flatnonzero(tail_items(POPULARITY, fraction=0.5)).tolist() == [1, 2, 5]
    assert np.flatnonzero(tail_items(POPULARITY, fraction=0.7)).tolist() == [1, 2, 4, 5]
    assert tail_items(POPULARITY, fraction=0.0).sum() == 0


def test_bad_slice_options_are_errors():
    with pytest.raises(ConfigError, match="tail_share"):
        tail_items(POPULARITY, 1.5)
    with pytest.raises(ConfigError, match="tail_fraction"):
        Evaluator(item_slices=True, tail_fraction=-0.1)
    ev = Evaluator(topk=(2,), metrics=("recall",), item_slices=True)
    with pytest.raises(ConfigError, match="item_popularity"):
        ev.evaluate(lambda u: torch.zeros(len(u), 6), csr([[0]], 6))
    with pytest.raises(ConfigError, match=r"eval.tail_share"):
        build_run_config(overrides=["eval.tail_share=2"])


def test_slice_metrics_match_hand_computed_values():
    # tail (share 0.2) = items {1, 2, 5}; head = {0, 3, 4}
    scores = torch.tensor(
        [
            # user 0 ranks 1, 0, 2, 3, ...: top-2 = {1, 0}
            [5.0, 6.0, 4.0, 3.0, 2.0, 1.0],
            # user 1 ranks 3, 4, 5, 0, ...: top-2 = {3, 4}
            [3.0, 0.0, 1.0, 6.0, 5.0, 4.0],
            # user 2 ranks 2, 5, ...: top-2 = {2, 5}
            [0.0, 1.0, 6.0, 2.0, 3.0, 5.0],
        ]
    )
    truth = csr([[0, 2, 3], [3, 5], [4]], 6)
    ev = Evaluator(topk=(2,), metrics=("recall", "hit", "ndcg"), item_slices=True)
    result = ev.evaluate(lambda u: scores[u], truth, item_popularity=POPULARITY)
    # overall: user 0 hits {0} of 3, user 1 {3} of 2, user 2 nothing of 1
    assert result["recall_at_2"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)
    # head: G^head = {0, 3}, {3}, {4}: hits {0}, {3}, {} -> 1/2, 1, 0
    assert result["recall_at_2_head"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert result["n_users_head"] == 3
    # tail: G^tail = {2}, {5}, {} (user 2 skipped): item 2 is 3rd for user 0, 5 is 3rd for
    # user 1 -> both miss
    assert result["recall_at_2_tail"] == 0.0
    assert result["n_users_tail"] == 2
    assert result["hit_at_2_head"] == pytest.approx(2 / 3)
    # NDCG on the head: user 0 has its hit at rank 2 of 2 relevant, user 1 at rank 1 of 1
    idcg2 = 1 + 1 / math.log2(3)
    assert result["ndcg_at_2_head"] == pytest.approx(((1 / math.log2(3)) / idcg2 + 1 + 0) / 3)
    # with K = 3 the tail items come in
    ev3 = Evaluator(topk=(3,), metrics=("recall",), item_slices=True)
    result3 = ev3.evaluate(lambda u: scores[u], truth, item_popularity=POPULARITY)
    assert result3["recall_at_3_tail"] == pytest.approx(1.0)
    # user 2's top-3 (2, 5, 4) now reaches its head item 4
    assert result3["recall_at_3_head"] == pytest.approx((1 / 2 + 1 + 1) / 3)


def test_masked_items_count_in_the_slice_but_are_never_hits():
    scores = torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    truth = csr([[1, 2]], 6)  # both tail items
    exclude = csr([[1]], 6)  # item 1 is masked: it still counts in |G^tail| = 2
    ev = Evaluator(topk=(2,), metrics=("recall",), item_slices=True)
    result = ev.evaluate(lambda u: scores[u], truth, exclude=(exclude,), item_popularity=POPULARITY)
    # ranking after masking: 0, 2 -> the tail hit is item 2 of 2 relevant
    assert result["recall_at_2_tail"] == pytest.approx(0.5)
    assert math.isnan(result["recall_at_2_head"]) and result["n_users_head"] == 0


def test_slices_are_batched_like_the_overall_metrics():
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 30
    scores = torch.from_numpy(rng.standard_normal((n_users, n_items)))
    sizes = rng.integers(1, 5, n_users)
    rows = [list(rng.choice(n_items, size=s, replace=False)) for s in sizes]
    truth = csr(rows, n_items)
    popularity = rng.integers(0, 20, n_items)
    results = [
        Evaluator(
            topk=(5, 10), metrics=("recall", "ndcg"), item_slices=True, batch_size=b
        ).evaluate(lambda u: scores[u], truth, item_popularity=popularity)
        for b in (7, 4096)
    ]
    for key, value in results[1].items():
        assert results[0][key] == pytest.approx(value), key
    assert {"recall_at_5_tail", "ndcg_at_10_head", "n_users_tail"} <= set(results[0])


def test_slices_are_off_by_default():
    ev = Evaluator(topk=(2,), metrics=("recall",))
    result = ev.evaluate(
        lambda u: torch.zeros(len(u), 6), csr([[0]], 6), item_popularity=POPULARITY
    )
    assert not any(k.endswith(("_head", "_tail")) for k in result)


def test_slice_rank_metrics_match_hand_computed_values():
    # Every user ranks 0 1 2 3 4 5. Training popularity [10, 0, 5, 2, 1, 3] (21 in all): the
    # tail (at most 20% = 4.2 interactions) is items 1 (0), 4 (1), 3 (2); the head is 0, 2, 5.
    popularity = np.array([10, 0, 5, 2, 1, 3])
    scores = torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]] * 4)
    truth = csr([[1, 4], [0, 2, 3, 5], [], [5]], 6)
    metrics = ("recall", "precision", "hit", "mrr", "ndcg", "map")
    ev = Evaluator(topk=(3, 10), metrics=metrics, item_slices=True)
    r = ev.evaluate(lambda u: scores[u], truth, item_popularity=popularity)

    def dcg(*ranks: int) -> float:
        return sum(1 / math.log2(rank + 1) for rank in ranks)

    # head: G^head = {} (user 0, skipped), {0, 2, 5} (hits at 1, 3, 6), {5} (hit at 6)
    assert r["n_users_head"] == 2
    # tail: G^tail = {1, 4} (hits at 2, 5), {3} (hit at 4), {} (user 3, skipped)
    assert r["n_users_tail"] == 2
    expected = {
        "recall_at_3_head": (2 / 3 + 0) / 2,
        "precision_at_3_head": (2 / 3 + 0) / 2,
        "precision_at_10_head": (3 / 10 + 1 / 10) / 2,
        "mrr_at_10_head": (1 + 1 / 6) / 2,
        "ndcg_at_3_head": (dcg(1, 3) / dcg(1, 2, 3) + 0) / 2,
        "ndcg_at_10_head": (dcg(1, 3, 6) / dcg(1, 2, 3) + dcg(6)) / 2,
        "map_at_3_head": ((1 + 2 / 3) / 3 + 0) / 2,
        "map_at_10_head": ((1 + 2 / 3 + 3 / 6) / 3 + 1 / 6) / 2,
        "recall_at_3_tail": (1 / 2 + 0) / 2,
        "recall_at_10_tail": 1.0,
        "hit_at_3_tail": 1 / 2,
        "mrr_at_3_tail": (1 / 2 + 0) / 2,
        "mrr_at_10_tail": (1 / 2 + 1 / 4) / 2,
        "ndcg_at_10_tail": (dcg(2, 5) / dcg(1, 2) + dcg(4)) / 2,
        "map_at_10_tail": ((1 / 2 + 2 / 5) / 2 + 1 / 4) / 2,
    }
    for key, value in expected.items():
        assert r[key] == pytest.approx(value, rel=1e-12), key
