"""RecSAE's coherence metric: hand-computed cases, and the probe's report of it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.eval.evaluator import Evaluator
from recsys.probe.coherence import (
    chance_coherence,
    latent_coherence,
    method_coherence,
    top_distinct_instances,
)
from recsys.probe.collect import collect_representations
from recsys.probe.report import render_html
from recsys.probe.runs import headline_metrics

# five instances in 2-d, three latents
X = np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 2.0], [0.0, 3.0], [3.0, 4.0]])
ACTS = np.array(
    [
        [5.0, 0.0, 0.0],
        [4.0, 0.0, 0.0],
        [3.0, 1.0, 0.0],
        [0.0, 2.0, 0.0],
        [0.0, 2.0, 1.0],
    ],
    dtype=np.float32,
)
KEYS = np.array([7, 7, 8, 9, 9])  # e.g. each instance's top-1 recommended item


def test_coherence_matches_a_hand_computed_example():
    # latent 0: instances 0, 1, 2 by activation; 1 repeats 0's key, so the pair is (0, 2):
    # cos((1,0), (1,2)) = 1/sqrt(5)
    # latent 1: 3 and 4 tie at 2 (3 first, by index), 4 repeats 3's key, so (3, 2):
    # cos((0,3), (1,2)) = 6 / (3 sqrt(5)) = 2/sqrt(5)
    # latent 2: a single positive instance, so no pair
    coh = latent_coherence(ACTS, X, top=2, keys=KEYS)
    assert coh[0] == pytest.approx(1 / math.sqrt(5))
    assert coh[1] == pytest.approx(2 / math.sqrt(5))
    assert math.isnan(coh[2])
    assert top_distinct_instances(ACTS, 2, KEYS).tolist() == [[0, 3, 4], [2, 2, -1]]
    # without keys every instance is distinct: (0, 1) are parallel, (3, 4) have cos 12/15
    plain = latent_coherence(ACTS, X, top=2)
    assert plain[0] == pytest.approx(1.0) and plain[1] == pytest.approx(0.8)
    # top 3: the mean over the three pairs; with the keys latent 0 has only two distinct
    three = latent_coherence(ACTS, X, top=3)
    assert three[0] == pytest.approx((1 + 2 / math.sqrt(5)) / 3)
    assert latent_coherence(ACTS, X, top=3, keys=KEYS)[0] == pytest.approx(1 / math.sqrt(5))
    # the raw-neuron aggregate: every latent that has a coherence
    mean, count = method_coherence(coh)
    assert count == 2 and mean == pytest.approx(1.5 / math.sqrt(5))


def test_chance_coherence_is_the_mean_cosine_of_all_pairs():
    # pairs of (1,0), (0,1), (1,1): cosines 0, 1/sqrt(2), 1/sqrt(2)
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert chance_coherence(x) == pytest.approx(math.sqrt(2) / 3)


def test_distinct_instances_are_found_beyond_the_candidate_pool():
    # the 40 most active instances share one key: the second distinct one is instance 40
    acts = np.linspace(2.0, 1.0, 60, dtype=np.float32)[:, None]
    keys = np.where(np.arange(60) < 40, 0, np.arange(60))
    assert top_distinct_instances(acts, 2, keys, pool=8)[:, 0].tolist() == [0, 40]


def test_the_probe_reports_coherence_per_method(concept_data, concept_lightgcn, concept_probe):
    probe = concept_probe
    s, t = probe.summaries, probe.config.concepts.confidence_threshold
    interpretable = [c for c in probe.concepts if c.interpretable(t)]
    # the SAE's coherence is RecSAE's: the mean over its interpretable latents
    assert s["sae"]["n_coherence"] == len(interpretable) > 0
    assert s["sae"]["coherence"] == pytest.approx(np.mean([c.coherence for c in interpretable]))
    # the neurons average over every latent
    assert s["neurons"]["n_coherence"] == s["neurons"]["n_latents"]
    # one latent recomputed from scratch: its two most active users with distinct top-1
    # recommendations of the model (training items excluded), cosine of their site vectors
    _, split = concept_data
    top1, _ = Evaluator(topk=(1,), metrics=("ndcg",)).topk(
        concept_lightgcn.scorer_from(collect_representations(concept_lightgcn)),
        np.arange(split.shape[0]),
        1,
        exclude=[split.train],
    )
    latent = interpretable[0].latent
    a = probe.latents[:, latent]
    users = sorted(np.flatnonzero(a > 0), key=lambda u: (-a[u], u))
    first = users[0]
    second = next(u for u in users if top1[u, 0] != top1[first, 0])
    x = probe.site.x.numpy()
    cos = x[first] @ x[second] / np.linalg.norm(x[first]) / np.linalg.norm(x[second])
    assert interpretable[0].coherence == pytest.approx(cos, abs=1e-6)
    # planted concepts: the trained SAE's latents group like users, more than its baselines'
    chance = probe.quality["coherence_chance"]
    assert s["sae"]["coherence"] > s["untrained"]["coherence"] > s["neurons"]["coherence"] > chance
    assert probe.to_json()["summary"]["sae"]["coherence"] == s["sae"]["coherence"]
    assert headline_metrics(probe)["probe/coherence"] == pytest.approx(s["sae"]["coherence"])


def test_the_baseline_table_shows_share_and_coherence_beside_the_count(concept_probe):
    page = render_html(concept_probe)
    assert (
        "<th>confidence ≥ 0.8</th><th>interpretable / alive</th><th>coherence (RecSAE)</th>"
    ) in page
    sae = concept_probe.summaries["sae"]
    row = f"<td>{sae['n_interpretable']}</td><td>{sae['share_interpretable_of_alive']:.4f}</td>"
    assert row + f"<td>{sae['coherence']:.4f}</td>" in page
