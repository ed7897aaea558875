"""Attributes, lift and significance, the concept set, and held-out confidence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.dataset import Dataset, FeatureTable, Vocabulary
from recsys.probe.concepts import (
    ConceptConfig,
    _best_threshold,
    build_attributes,
    build_concepts,
    instance_profiles,
    named_concepts,
    normalize_term,
    popularity_buckets,
    split_instances,
    summarize,
    tfidf_terms,
)


def _dataset(n_users: int = 200, n_items: int = 40) -> Dataset:
    """Users 0..99 watch only "Action" items (even), the others only "Drama" (odd); every item
    is watched by the same number of users, so popularity says nothing."""
    action, drama = np.arange(0, n_items, 2), np.arange(1, n_items, 2)
    users, items = [], []
    for u in range(n_users):
        pool = action if u < n_users // 2 else drama
        users += [u] * 8
        items += [int(pool[(u * 8 + j) % len(pool)]) for j in range(8)]
    genre = np.zeros((n_items, 2), dtype=np.float32)
    genre[action, 0] = 1
    genre[drama, 1] = 1
    years = (np.arange(n_items) // 2) % 2
    titles = sp.csr_array(np.eye(n_items, 3, dtype=np.float32) + np.eye(n_items, 3, -1))
    rng = np.random.default_rng(0)
    features = {
        "genre": FeatureTable("genre", "multi_hot", sp.csr_array(genre), ["Action", "Drama"]),
        "class": FeatureTable("class", "multi_hot", sp.csr_array(genre), ["Action", "Drama"]),
        "year": FeatureTable("year", "categorical", years, ["1994", "1987"]),
        "text": FeatureTable("text", "dense", rng.standard_normal((n_items, 4)), None),
        "title": FeatureTable("title", "multi_hot", titles, ["The", "Star!", "1995"]),
    }
    gender = np.where(np.arange(n_users) % 2 == 0, 0, 1)
    return Dataset.from_arrays(
        "toy",
        Vocabulary([str(u) for u in range(n_users)], "user"),
        Vocabulary([str(i) for i in range(n_items)], "item"),
        np.array(users),
        np.array(items),
        item_features=features,
        user_features={"gender": FeatureTable("gender", "categorical", gender, ["F", "M"])},
    )


def test_attributes_from_features_dedupe_bucket_and_skip_dense():
    ds = _dataset()
    attrs = build_attributes(ds, ds.interactions, ConceptConfig(min_support=1))
    assert attrs.names[:2] == ["genre=Action", "genre=Drama"]  # class == genre: used once
    assert "year=1990s" in attrs.names and "year=1980s" in attrs.names
    assert not any(n.startswith(("class", "text")) for n in attrs.names)
    assert [n for n in attrs.names if n.startswith("popularity")] == [
        "popularity=top 5%",
        "popularity=top 5-20%",
        "popularity=top 20-50%",
        "popularity=bottom 50%",
    ]
    assert attrs.user_names == ["user.gender=F", "user.gender=M"]
    assert attrs.items.shape == (40, len(attrs.names))
    # every item is in exactly one popularity bucket
    pop = attrs.items[:, [i for i, f in enumerate(attrs.families) if f == "popularity"]]
    assert (np.asarray(pop.sum(axis=1)).ravel() == 1).all()


def test_large_token_vocabularies_become_text_terms():
    n = 30
    vocab = ["The", "Star", "star,", "Wars", "of", "1977", "II"] + [f"w{i}" for i in range(60)]
    rows = []
    for i in range(n):
        rows.append([0, 1, 3] if i < 10 else [0, 2] if i < 12 else [7 + (i % 60)])
    mat = sp.lil_array((n, len(vocab)), dtype=np.float32)
    for i, cols in enumerate(rows):
        mat[i, cols] = 1
    ds = Dataset.from_arrays(
        "t",
        Vocabulary(["0"], "user"),
        Vocabulary([str(i) for i in range(n)], "item"),
        np.zeros(3),
        np.arange(3),
        item_features={"title": FeatureTable("title", "multi_hot", sp.csr_array(mat), vocab)},
    )
    attrs = build_attributes(ds, ds.interactions, ConceptConfig(min_support=5))
    terms = [x for x in attrs.names if x.startswith("title~")]
    # "Star" and "star," merge (12 items); stopwords, numbers and rare words are dropped
    assert terms == ["title~star", "title~wars"]
    assert attrs.items[:, attrs.names.index("title~star")].sum() == 12
    assert attrs.text_families == {"title"}


def test_normalize_term():
    assert normalize_term("Star!") == "star"
    assert normalize_term("the") is None and normalize_term("1995") is None
    assert normalize_term("(Ai") is None  # too short


def test_popularity_buckets_follow_training_counts():
    train = sp.csr_array(np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=np.float32))
    names, m = popularity_buckets(train)
    # ranks: item 0 (3), item 1 (2), item 2 (1), item 3 (0): fractions 0, .25, .5, .75
    assert m.toarray().argmax(1).tolist() == [0, 2, 3, 3]
    assert names[0] == "popularity=top 5%"


def test_user_profiles_are_attribute_shares():
    ds = _dataset()
    attrs = build_attributes(ds, ds.interactions, ConceptConfig(min_support=1))
    profiles, names, _ = instance_profiles(attrs, "user", ds.interactions)
    assert profiles.shape == (200, len(names))
    a = names.index("genre=Action")
    assert profiles[:100, a].tolist() == [1.0] * 100 and profiles[100:, a].sum() == 0
    assert names[-2:] == ["user.gender=F", "user.gender=M"]
    items, item_names, _ = instance_profiles(attrs, "item", ds.interactions)
    assert items.shape == (40, len(attrs.names)) and item_names == attrs.names


def _acts(n: int, on: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.zeros(n, dtype=np.float32)
    a[on] = 1.0 + rng.random(len(on))
    return a


def test_a_latent_on_action_fans_gets_the_action_concept_with_full_confidence():
    ds = _dataset()
    config = ConceptConfig(min_support=1)
    attrs = build_attributes(ds, ds.interactions, config)
    profiles, names, _ = instance_profiles(attrs, "user", ds.interactions)
    rng = np.random.default_rng(1)
    acts = np.stack(
        [
            _acts(200, np.arange(100)),  # every action fan
            _acts(200, rng.choice(200, 40, replace=False)),  # no pattern
            np.zeros(200, dtype=np.float32),  # dead
            _acts(200, np.arange(50)),  # half the action fans: the concept over-predicts
        ],
        axis=1,
    )
    heldout = split_instances(200, 0.5, seed=0)
    concepts = build_concepts(
        acts,
        profiles,
        names,
        heldout,
        config,
        item_attributes=attrs.items,
        kind="user",
        train=ds.interactions,
    )
    action, noise, dead, partial = concepts
    assert action.primary == "genre=Action"
    assert action.lift == pytest.approx(2.0)  # share 1.0 vs base 0.5
    assert action.confidence == 1.0 and action.recall == 1.0 and action.precision == 1.0
    assert action.interpretable() and action.n_pos >= 5
    top = profiles[action.top_instances, names.index("genre=Action")]
    assert top.tolist() == [1.0] * len(top)
    assert not noise.interpretable()
    assert dead.n_active == 0 and dead.attributes == [] and math.isnan(dead.confidence)
    assert partial.primary == "genre=Action" and partial.recall == 1.0
    assert partial.specificity < 0.9  # silent action fans are predicted active
    s = summarize(concepts)
    assert s["n_alive"] == 3 and s["n_distinct_concepts"] == 1
    assert named_concepts(concepts, ["genre=Action", "genre=Drama"]) == {
        "genre=Action": 0,
        "genre=Drama": None,
    }


def test_lift_and_z_match_a_hand_computation():
    profiles = np.array([[1.0], [1.0], [0.0], [0.0], [1.0], [0.0], [0.0], [0.0]], np.float32)
    acts = np.array([[3.0], [2.0], [0.0], [0.0], [1.0], [0.0], [0.0], [0.0]], np.float32)
    config = ConceptConfig(top_n=3, min_z=0.0, min_instances=1)
    heldout = np.zeros(8, dtype=bool)
    (c,) = build_concepts(
        acts,
        profiles,
        ["a"],
        heldout,
        config,
        item_attributes=sp.csr_array((1, 1)),
        kind="item",
    )
    base, sd = 3 / 8, math.sqrt(3 / 8 * 5 / 8)
    assert c.top_instances == [0, 1, 4]
    assert c.lift == pytest.approx(1.0 / base)
    assert c.z == pytest.approx((1.0 - base) / (sd / math.sqrt(3)), rel=1e-5)


def test_one_extreme_instance_does_not_make_a_concept():
    # attribute "rare": only instance 0 has it; the top 10 include instance 0
    n = 100
    profiles = np.zeros((n, 1), dtype=np.float32)
    profiles[0, 0] = 1.0
    acts = np.zeros((n, 1), dtype=np.float32)
    acts[:10, 0] = np.arange(10, 0, -1)
    config = ConceptConfig(min_z=2.0)
    (c,) = build_concepts(
        acts,
        profiles,
        ["rare"],
        np.zeros(n, dtype=bool),
        config,
        item_attributes=sp.csr_array((1, 1)),
        kind="item",
    )
    assert c.z != c.z or c.attributes == []  # significant z, but only 1 of 10 carry it
    assert c.top_attributes[0][0] == "rare" and c.top_attributes[0][2] > 2.0


def test_conjunction_is_added_when_it_is_more_significant():
    # items: a (0-29), b (0-9 and 30-39); the latent fires on items carrying both a and b
    n = 80
    item_attrs = np.zeros((n, 2), dtype=np.float32)
    item_attrs[:30, 0] = 1
    item_attrs[list(range(10)) + list(range(30, 40)), 1] = 1
    acts = np.zeros((n, 1), dtype=np.float32)
    acts[:10, 0] = 1 + np.arange(10)[::-1]
    config = ConceptConfig(top_n=10, min_support=5, min_instances=1)
    (c,) = build_concepts(
        acts,
        item_attrs,
        ["a", "b"],
        np.zeros(n, dtype=bool),
        config,
        item_attributes=sp.csr_array(item_attrs),
        kind="item",
    )
    assert sorted(c.attributes) == ["a", "b"]
    assert c.label in ("a & b", "b & a") and c.top_rate == 1.0


def test_best_threshold_separates_and_is_permissive():
    assert _best_threshold(np.array([0.6, 0.8]), np.array([0.1, 0.2])) == pytest.approx(0.4)
    assert _best_threshold(np.array([]), np.array([])) == math.inf


def test_tfidf_terms_rank_distinctive_words():
    text = sp.csr_array(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [1, 0, 1]], np.float32))
    terms = tfidf_terms([1, 2, 3], "item", text, ["common", "rare", "mid"], None)
    assert terms[0][0] == "mid" and "common" not in [t for t, _ in terms]  # idf(common) = 0
    train = sp.csr_array(np.array([[0, 0, 1, 1], [1, 1, 0, 0]], np.float32))
    assert [t for t, _ in tfidf_terms([0], "user", text, ["common", "rare", "mid"], train)] == [
        "mid"
    ]
    assert [t for t, _ in tfidf_terms([1], "user", text, ["common", "rare", "mid"], train)] == [
        "rare"
    ]


def test_split_instances_is_seeded():
    a, b = split_instances(10, 0.3, 4), split_instances(10, 0.3, 4)
    assert a.sum() == 3 and (a == b).all()
