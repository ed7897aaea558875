"""Every metric against values computed by hand, plus the metric registry and name checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.errors import ConfigError
from recsys.eval import METRICS, Evaluator, UserMetric, register_metric, validate_metric_name
from recsys.eval.metrics import RankedBatch, parse_metric_key

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

# Six items, four users. Scores give these rankings (best first):
#   user 0: 0 1 2 3 4 5, item 1 excluded (training)  -> 0 2 3 4 5
#   user 1: 5 4 3 2 1 0
#   user 2: 3 0 1 2 4 5
#   user 3: 5 4 3 2 1 0, no held-out items           -> skipped
# Held-out items: G_0 = {2, 5}, G_1 = {5}, G_2 = {0, 1, 2, 4}, G_3 = {}.
# Hits h_1..h_5: user 0: 0 1 0 0 1; user 1: 1 0 0 0 0; user 2: 0 1 1 1 1.
SCORES = torch.tensor(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [0.8, 0.7, 0.6, 0.9, 0.5, 0.4],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    ]
)
TRUTH = sp.csr_array((np.ones(7), ([0, 0, 1, 2, 2, 2, 2], [2, 5, 5, 0, 1, 2, 4])), shape=(4, 6))
TRAIN = sp.csr_array((np.ones(1), ([0], [1])), shape=(4, 6))
POPULARITY = np.array([10, 0, 5, 2, 1, 3])

L2, L3, L5, L6 = math.log2(2), math.log2(3), math.log2(5), math.log2(6)

# Per K in (1, 3, 5): the mean over users 0, 1, 2 of the hand-computed values.
EXPECTED = {
    # recall = hits / |G|: u0 0, 1/2, 2/2; u1 1, 1, 1; u2 0, 2/4, 4/4
    "recall": [(0 + 1 + 0) / 3, (1 / 2 + 1 + 2 / 4) / 3, (1 + 1 + 1) / 3],
    # recall_min = hits / min(K, |G|): u0 0/1, 1/2, 2/2; u1 1, 1, 1; u2 0/1, 2/3, 4/4
    "recall_min": [(0 + 1 + 0) / 3, (1 / 2 + 1 + 2 / 3) / 3, 1.0],
    # precision = hits / K: u0 0, 1/3, 2/5; u1 1, 1/3, 1/5; u2 0, 2/3, 4/5
    "precision": [1 / 3, (1 / 3 + 1 / 3 + 2 / 3) / 3, (2 / 5 + 1 / 5 + 4 / 5) / 3],
    # hit: u0 0, 1, 1; u1 1, 1, 1; u2 0, 1, 1
    "hit": [1 / 3, 1.0, 1.0],
    # mrr = 1 / first hit rank: u0 first hit at 2; u1 at 1; u2 at 2
    "mrr": [1 / 3, (1 / 2 + 1 + 1 / 2) / 3, (1 / 2 + 1 + 1 / 2) / 3],
    # ndcg: u0 DCG@3 = 1/log2(3), DCG@5 = 1/log2(3) + 1/log2(6), IDCG = 1 + 1/log2(3) (|G|=2)
    #       u1 1 at every K
    #       u2 DCG@3 = 1/log2(3) + 1/log2(4), IDCG@3 = 1 + 1/log2(3) + 1/log2(4)
    #          DCG@5 = DCG@3 + 1/log2(5) + 1/log2(6), IDCG@5 = IDCG@3 + 1/log2(5) (|G|=4)
    "ndcg": [
        (0 + 1 + 0) / 3,
        ((1 / L3) / (1 + 1 / L3) + 1 + (1 / L3 + 1 / 2) / (1 + 1 / L3 + 1 / 2)) / 3,
        (
            (1 / L3 + 1 / L6) / (1 + 1 / L3)
            + 1
            + (1 / L3 + 1 / 2 + 1 / L5 + 1 / L6) / (1 / L2 + 1 / L3 + 1 / 2 + 1 / L5)
        )
        / 3,
    ],
    # map = sum_r h_r * hits@r / r / min(|G|, K):
    #   u0: @1 0; @3 (1/2) / 2 = 1/4; @5 (1/2 + 2/5) / 2 = 0.45
    #   u1: 1 at every K
    #   u2: @1 0; @3 (1/2 + 2/3) / 3 = 7/18; @5 (1/2 + 2/3 + 3/4 + 4/5) / 4 = 163/240
    "map": [1 / 3, (1 / 4 + 1 + 7 / 18) / 3, (0.45 + 1 + 163 / 240) / 3],
    # item coverage: top-1 {0, 5, 3} -> 3/6; top-3 {0,2,3} u {5,4,3} u {3,0,1} = all 6 items
    "item_coverage": [3 / 6, 1.0, 1.0],
    # average popularity, popularity = [10, 0, 5, 2, 1, 3]:
    #   u0: [0] 10; [0,2,3] 17/3; [0,2,3,4,5] 21/5
    #   u1: [5] 3;  [5,4,3] 6/3;  [5,4,3,2,1] 11/5
    #   u2: [3] 2;  [3,0,1] 12/3; [3,0,1,2,4] 18/5
    "average_popularity": [(10 + 3 + 2) / 3, (17 / 3 + 2 + 4) / 3, (21 + 11 + 18) / 5 / 3],
}


def score_fn(users: torch.Tensor) -> torch.Tensor:
    return SCORES[users]


@pytest.fixture(scope="module")
def hand_result() -> tuple[dict[str, float], dict[str, np.ndarray]]:
    ev = Evaluator(topk=(5, 1, 3), metrics=ALL)
    return ev.evaluate(score_fn, TRUTH, [TRAIN], item_popularity=POPULARITY, per_user=True)


@pytest.mark.parametrize("metric", ALL)
def test_hand_computed(metric, hand_result):
    result, _ = hand_result
    for k, expected in zip((1, 3, 5), EXPECTED[metric], strict=True):
        assert result[f"{metric}_at_{k}"] == pytest.approx(expected, abs=1e-12), (metric, k)


def test_result_keys_and_user_count(hand_result):
    result, table = hand_result
    assert list(result) == [f"{m}_at_{k}" for m in ALL for k in (1, 3, 5)] + ["n_users"]
    assert result["n_users"] == 3  # user 3 has no held-out items
    np.testing.assert_array_equal(table["user"], [0, 1, 2])


def test_per_user_values(hand_result):
    result, table = hand_result
    # NDCG@3 of user 0 = (1/log2 3) / (1 + 1/log2 3); MAP@5 of user 2 = 163/240
    assert table["ndcg_at_3"][0] == pytest.approx((1 / L3) / (1 + 1 / L3))
    assert table["map_at_5"][2] == pytest.approx(163 / 240)
    np.testing.assert_allclose(table["recall_at_3"], [1 / 2, 1, 2 / 4])
    np.testing.assert_allclose(table["mrr_at_5"], [1 / 2, 1, 1 / 2])
    assert "item_coverage_at_1" not in table  # not a per-user metric
    for key, values in table.items():
        if key != "user":
            assert values.mean() == pytest.approx(result[key])


def test_fewer_rankable_items_than_k():
    # 3 items; user 0 has items 0 and 1 masked, so only item 2 is rankable. Item 1 is also
    # held out: masked items are never hits, but it still counts in |G| = 2.
    scores = torch.tensor([[3.0, 2.0, 1.0]])
    truth = sp.csr_array(np.array([[0, 1, 1]]))
    train = sp.csr_array(np.array([[1, 1, 0]]))
    ev = Evaluator(topk=(1, 3, 5), metrics=ALL)
    r = ev.evaluate(lambda u: scores[u], truth, [train], item_popularity=np.array([4, 5, 6]))
    # ranked list: [2, empty, empty, (empty, empty)]; h = 1 0 0 0 0
    assert [r[f"recall_at_{k}"] for k in (1, 3, 5)] == pytest.approx([1 / 2] * 3)
    assert [r[f"precision_at_{k}"] for k in (1, 3, 5)] == pytest.approx([1, 1 / 3, 1 / 5])
    # IDCG@1 = 1, IDCG@3 = IDCG@5 = 1 + 1/log2(3) since |G| = 2
    assert r["ndcg_at_3"] == pytest.approx(1 / (1 + 1 / L3))
    # MAP@3 = (1 * 1/1) / min(2, 3)
    assert r["map_at_3"] == pytest.approx(1 / 2)
    # only item 2 is ever recommended; popularity averages over non-empty slots
    assert [r[f"item_coverage_at_{k}"] for k in (1, 3, 5)] == pytest.approx([1 / 3] * 3)
    assert [r[f"average_popularity_at_{k}"] for k in (1, 3, 5)] == pytest.approx([6] * 3)


def test_model_minus_inf_scores_are_never_hits():
    # The model itself scores item 0 at -inf: that slot is empty, not a hit.
    scores = torch.tensor([[-math.inf, 1.0, 0.5]])
    truth = sp.csr_array(np.array([[1, 0, 0]]))
    r = Evaluator(topk=(3,), metrics=("hit", "item_coverage")).evaluate(lambda u: scores[u], truth)
    assert r["hit_at_3"] == 0.0
    assert r["item_coverage_at_3"] == pytest.approx(2 / 3)


def test_registry_and_docstrings():
    assert set(ALL) <= set(METRICS)
    for name, cls in METRICS.items():
        assert cls.name == name
        assert ".. math::" in (cls.__doc__ or ""), name


def test_register_custom_metric():
    @register_metric
    class FirstSlotHit(UserMetric):
        """Whether rank 1 is a hit: :math:`h_1` (same at every K)."""

        name = "first_slot_hit_test"

        def __call__(self, batch: RankedBatch) -> torch.Tensor:
            return batch.hits_f[:, :1].expand(-1, len(batch.cutoffs))

    try:
        r = Evaluator(topk=(1, 3), metrics=("first_slot_hit_test",)).evaluate(score_fn, TRUTH)
        assert r["first_slot_hit_test_at_3"] == pytest.approx(1 / 3)  # only user 1
        validate_metric_name("first_slot_hit_test_at_7")
        with pytest.raises(ConfigError, match="already registered"):

            @register_metric
            class Clash(UserMetric):
                name = "first_slot_hit_test"

                def __call__(self, batch: RankedBatch) -> torch.Tensor:
                    raise NotImplementedError

    finally:
        METRICS.pop("first_slot_hit_test", None)


@pytest.mark.parametrize(
    "name", ["ndcg_at_10", "recall_min_at_20", "item_coverage_at_1", "map_at_500"]
)
def test_valid_names(name):
    validate_metric_name(name)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("ndcg@10", "ndcg@10"),
        ("foo_at_10", "foo_at_10"),
        ("ndcg_at_0", "'0'"),
        ("ndcg_at_-3", "'-3'"),
        ("ndcg_at_x", "'x'"),
        ("ndcg_at_", "''"),
        ("ndcg", "ndcg"),
        ("n_users", "n_users"),
    ],
)
def test_bad_names(name, bad):
    with pytest.raises(ConfigError, match="valid names") as info:
        validate_metric_name(name)
    assert bad in str(info.value)
    assert "recall" in str(info.value)  # the message lists the metrics


def test_name_against_an_evaluator():
    ev = Evaluator(topk=(10, 20), metrics=("ndcg", "recall"))
    ev.validate_metric_name("ndcg_at_20")
    with pytest.raises(ConfigError, match="not one of the evaluated cutoffs") as info:
        ev.validate_metric_name("ndcg_at_50")
    assert "recall_at_20" in str(info.value)
    with pytest.raises(ConfigError, match="'mrr_at_10'"):
        ev.validate_metric_name("mrr_at_10")
    assert parse_metric_key("recall_min_at_20") == ("recall_min", 20)
    assert ev.metric_names == ["ndcg_at_10", "ndcg_at_20", "recall_at_10", "recall_at_20"]


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"metrics": ("ndcg", "bleu")}, "'bleu'"),
        ({"topk": (10, 0)}, "0"),
        ({"topk": (-5,)}, "-5"),
        ({"topk": (2.5,)}, "2.5"),
        ({"topk": (True,)}, "True"),
        ({"topk": ()}, "at least one"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_config(kwargs, bad):
    with pytest.raises(ConfigError) as info:
        Evaluator(**kwargs)
    assert bad in str(info.value)


def test_fewer_and_more_relevant_than_k_and_k_beyond_the_catalogue():
    # Every user ranks 0 1 2 3 4 5 (nothing masked). G_0 = {1, 4} (|G| < K = 3),
    # G_1 = {0, 2, 3, 5} (|G| > K = 3), G_2 = {} (not evaluated), G_3 = {5}. K = 10 > 6 items:
    # ranks 7..10 are empty slots.
    scores = torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]] * 4)
    rows, cols = [0, 0, 1, 1, 1, 1, 3], [1, 4, 0, 2, 3, 5, 5]
    truth = sp.csr_array((np.ones(7), (rows, cols)), shape=(4, 6))
    ev = Evaluator(topk=(3, 10), metrics=ALL)
    result, table = ev.evaluate(
        lambda u: scores[u], truth, item_popularity=POPULARITY, per_user=True
    )
    np.testing.assert_array_equal(table["user"], [0, 1, 3])
    assert result["n_users"] == 3

    def dcg(*ranks: int) -> float:
        return sum(1 / math.log2(r + 1) for r in ranks)

    expected = {
        # top-3 = 0 1 2: h = 0 1 0 | 1 0 1 | 0 0 0
        "recall_at_3": [1 / 2, 2 / 4, 0],
        "precision_at_3": [1 / 3, 2 / 3, 0],
        "hit_at_3": [1, 1, 0],
        "mrr_at_3": [1 / 2, 1, 0],
        "ndcg_at_3": [dcg(2) / dcg(1, 2), dcg(1, 3) / dcg(1, 2, 3), 0],
        "map_at_3": [(1 / 2) / 2, (1 + 2 / 3) / 3, 0],
        "average_popularity_at_3": [15 / 3] * 3,
        # top-10 = 0 1 2 3 4 5 + 4 empty slots; precision still divides by 10
        "recall_at_10": [1, 1, 1],
        "precision_at_10": [2 / 10, 4 / 10, 1 / 10],
        "hit_at_10": [1, 1, 1],
        "mrr_at_10": [1 / 2, 1, 1 / 6],
        "ndcg_at_10": [dcg(2, 5) / dcg(1, 2), dcg(1, 3, 4, 6) / dcg(1, 2, 3, 4), dcg(6)],
        "map_at_10": [(1 / 2 + 2 / 5) / 2, (1 + 2 / 3 + 3 / 4 + 4 / 6) / 4, 1 / 6],
        "average_popularity_at_10": [21 / 6] * 3,  # over the 6 non-empty slots
    }
    for key, values in expected.items():
        np.testing.assert_allclose(table[key], values, rtol=1e-12, err_msg=key)
        assert result[key] == pytest.approx(np.mean(values), rel=1e-12), key
    assert result["item_coverage_at_3"] == pytest.approx(3 / 6)
    assert result["item_coverage_at_10"] == 1.0
