"""Ablation and steering mechanics, and ITDA dictionaries."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.models.registry import create_model
from recsys.probe.ablation import (
    AblationConfig,
    Ablator,
    _overlap,
    _share,
    concept_item_mask,
    decode_delta,
    summarize_effects,
)
from recsys.probe.itda import (
    build_itda,
    chance_jaccard,
    default_delta,
    itda_fvu,
    jaccard,
    matching_pursuit,
    normalized_error,
)
from recsys.probe.sae import SAEConfig, TopKSAE, encode_all


def test_share_and_overlap_by_hand():
    concept = np.array([True, False, True, False])
    items = np.array([[0, 1, 2], [1, 3, -1]])
    assert _share(items, concept).tolist() == [2 / 3, 0.0]
    assert _overlap(np.array([[0, 1, 2]]), np.array([[2, 0, 3]])).tolist() == [2 / 3]
    names = ["a", "b"]  # item attributes; user attributes are not item properties
    m = sp.csr_array(np.array([[1, 1], [1, 0], [0, 1]], np.float32))
    assert concept_item_mask(["a", "b", "user.x"], names, m).tolist() == [True, False, False]
    assert not concept_item_mask(["user.x"], names, m).any()


@pytest.mark.parametrize("normalize", ["dataset", "layer", "none"])
def test_ablating_every_latent_leaves_only_the_pre_bias(normalize):
    torch.manual_seed(0)
    x = torch.randn(10, 6) * 3
    sae = TopKSAE(SAEConfig(d_in=6, expansion=2, k=4, normalize=normalize))
    sae.fit_init(x)
    z = encode_all(sae, x)
    moved = x + decode_delta(sae, -z, x)
    expected = sae.decode(torch.zeros_like(z), x) + (x - sae(x).recon)  # b_pre + error
    assert torch.allclose(moved, expected, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_bpr():
    """BPR with 3 users x 4 items whose user 0 is one SAE latent exactly."""
    train = sp.csr_array(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], np.float32))
    model = create_model("bpr", embedding_size=2).setup(train)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0, 0.2], [0.0, 1.0], [0.3, 0.1]]))
        model.item_embedding.weight.copy_(
            torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [0.0, 1.0]])
        )
    sae = TopKSAE(SAEConfig(d_in=2, expansion=1, k=1, normalize="none"))
    with torch.no_grad():
        sae.w_dec.copy_(torch.eye(2))
        sae.w_enc.copy_(torch.eye(2))
        sae.b_pre.zero_()
    return model, train, sae


def test_ablation_removes_the_latent_and_the_concept_from_the_top_k(tiny_bpr):
    model, train, sae = tiny_bpr
    reps = {k: v.detach() for k, v in model.representations().items()}
    z = encode_all(sae, reps["user"])
    ablator = Ablator(
        model, reps, "user", "user", sae, z, train, train, AblationConfig(k=1, steer_scale=2.0)
    )
    rows, edited = ablator.scaled(0, 0.0)
    assert rows.tolist() == [0, 2]  # latent 0 (the first coordinate) wins for users 0 and 2
    assert torch.allclose(edited[0], torch.tensor([0.0, 0.2]))
    assert torch.allclose(edited[2], torch.tensor([0.0, 0.1]))
    assert torch.equal(edited[1], reps["user"][1])
    concept = np.array([False, True, False, False])  # item 1 carries the latent's concept
    effect = ablator.effect(0, "item 1", concept, random_latents=[1])
    # before: item 1 tops both users' lists; after: user 0 gets item 2, user 2 item 3 (item 2
    # is in user 2's training data)
    assert effect.share_before == 1.0 and effect.share_ablated == 0.0 and effect.drop == 1.0
    assert effect.overlap_ablated == 0.0
    # user 1, where latent 1 is active, has item 1 in training: its share cannot move
    assert effect.random_latent_drop == 0.0
    assert effect.n_instances == 2 and effect.n_users == 2 and effect.random_latents == [1]
    # steering x2 keeps item 1 on top
    assert effect.share_steered == 1.0 and effect.steer_gain == 0.0
    summary = summarize_effects([effect])
    assert summary["n_ablated"] == 1 and summary["mean_drop"] == pytest.approx(effect.drop)
    assert summarize_effects([]) == {"n_ablated": 0}


def test_matching_pursuit_recovers_orthonormal_coefficients():
    atoms = torch.eye(4)[:3]
    x = torch.tensor([[2.0, -1.0, 0.5, 0.0]])
    codes = matching_pursuit(x, atoms, k=3)
    assert torch.allclose(codes, torch.tensor([[2.0, -1.0, 0.5]]))
    assert matching_pursuit(x, torch.zeros(0, 4), k=2).shape == (1, 0)


def test_normalized_error_is_two_minus_two_cosine_over_d():
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    y = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    cos = 1 / np.sqrt(2)
    assert float(normalized_error(x, y)) == pytest.approx((2 - 2 * cos) / 4)
    assert default_delta(4, cosine=0.9) == pytest.approx(0.05)


def test_itda_dictionary_explains_its_data_and_is_rotation_invariant():
    gen = torch.Generator().manual_seed(0)
    basis = torch.randn(5, 16, generator=gen)
    x = torch.randn(300, 5, generator=gen) @ basis  # rank 5 in 16 dimensions
    d = build_itda(x, k=5, seed=1)
    assert 5 <= len(d) < 60
    assert set(d.ids.tolist()) <= set(range(300)) and len(set(d.ids.tolist())) == len(d)
    assert torch.allclose(d.atoms.norm(dim=1), torch.ones(len(d)), atol=1e-5)
    assert itda_fvu(d, x) < 0.05
    # an orthogonal rotation changes no inner product: the same atoms are chosen
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen))
    rotated = build_itda(x @ q, k=5, seed=1)
    assert jaccard(d.ids, rotated.ids) == 1.0
    # another stream order or unrelated vectors give other atoms
    noise = build_itda(torch.randn(300, 16, generator=gen), k=5, seed=1)
    assert jaccard(d.ids, noise.ids) < 0.5
    assert len(build_itda(x, k=5, seed=1, max_atoms=3)) == 3


def test_jaccard_and_its_chance_level():
    assert jaccard(np.array([1, 2, 3]), np.array([2, 3, 4])) == 0.5
    assert jaccard(np.array([]), np.array([])) == 1.0
    assert chance_jaccard(10, 10, 100) == pytest.approx(1 / 19)
    assert chance_jaccard(100, 100, 100) == 1.0
    rng = np.random.default_rng(0)
    sims = [
        jaccard(rng.choice(200, 40, replace=False), rng.choice(200, 60, replace=False))
        for _ in range(400)
    ]
    assert np.mean(sims) == pytest.approx(chance_jaccard(40, 60, 200), rel=0.05)


def test_without_random_latents_the_ratio_has_no_control(recwarn):
    from recsys.probe.ablation import LatentEffect

    nan = float("nan")
    effect = LatentEffect(
        latent=0,
        concept="genre=a",
        n_instances=5,
        n_users=5,
        share_before=0.5,
        share_ablated=0.2,
        share_steered=0.6,
        drop=0.3,
        steer_gain=0.1,
        random_latent_drop=nan,  # ablation.n_random=0
        random_direction_drop=0.0,
        overlap_ablated=0.7,
        overlap_random=nan,
        ndcg_before=0.1,
        ndcg_ablated=0.05,
    )
    summary = summarize_effects([effect])
    # before: an infinite ratio, as if the random control had moved nothing
    assert np.isnan(summary["drop_ratio_vs_random_latent"])
    assert np.isnan(summary["mean_random_latent_drop"]) and summary["mean_drop"] == 0.3
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
