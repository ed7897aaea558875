"""The VAE-family models and EASE: conformance, annealing, fold-in scoring, closed form."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from recsys_vae import ARDVAE, EASE, MultDAE, MultVAE

from recsys.errors import ConfigError
from recsys.models.registry import get_model_class, list_models
from recsys.testing import MODEL_CHECKS

NAMES = ["multvae", "multdae", "ardvae", "ease"]


def test_models_are_registered_by_entry_point():
    infos = {info.name: info for info in list_models()}
    for name in NAMES:
        assert infos[name].source == "recsys-vae"
    assert get_model_class("multvae") is MultVAE
    assert get_model_class("ease") is EASE


@pytest.mark.parametrize("check", MODEL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", NAMES)
def test_vae_conformance(name, check, vae_split):
    check(get_model_class(name), vae_split)


def test_anneal_schedule_and_step_counter(vae_split):
    torch.manual_seed(0)
    model = MultVAE(latent_dim=8, hidden_dims=(16,), anneal_cap=0.3, total_anneal_steps=10)
    model.setup(vae_split.train)
    batch = {"rows": torch.from_numpy(vae_split.train[:32].toarray().astype(np.float32))}
    betas, weighted, kls = [], [], []
    model.train()
    for _ in range(6):
        betas.append(model.beta)
        terms = model.loss(batch)
        weighted.append(float(terms["beta_kl"].detach()))
    # beta_t = min(cap, t / total): 0, .1, .2, .3, .3, .3
    assert betas == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.3, 0.3])
    assert int(model.anneal_step) == 6
    assert weighted[0] == 0.0 and all(w > 0 for w in weighted[1:])
    # evaluation-mode passes do not advance the schedule, and the counter is in the state dict
    model.eval()
    mu, logvar = model.encode(batch["rows"])
    with torch.no_grad():
        kls.append(float(model.kl(mu, logvar)))
        assert float(model.loss(batch)["beta_kl"]) == pytest.approx(0.3 * kls[0], rel=1e-5)
    assert int(model.anneal_step) == 6
    assert int(model.state_dict()["anneal_step"]) == 6
    model.reset_parameters()
    assert int(model.anneal_step) == 0


def test_no_annealing_uses_the_cap():
    assert MultVAE(anneal_cap=0.7, total_anneal_steps=0).setup(
        sp.csr_array(np.eye(4, dtype=np.float32))
    ).beta == pytest.approx(0.7)


def test_dae_penalty_term(vae_split):
    model = MultDAE(latent_dim=8, l2=1e-3).setup(vae_split.train)
    batch = {"rows": torch.from_numpy(vae_split.train[:16].toarray().astype(np.float32))}
    terms = model.loss(batch)
    with torch.no_grad():
        weights = sum(float(w.weight.pow(2).sum()) for w in [*model.encoder, *model.decoder])
    assert set(terms) == {"nll", "reg"}
    assert float(terms["reg"].detach()) == pytest.approx(1e-3 * weights, rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_fold_in_scores_depend_only_on_the_history_row(name, vae_split):
    cls = get_model_class(name)
    torch.manual_seed(0)
    model = cls().setup(vae_split.train)
    if cls.batch_kind == "none":
        model.fit(vae_split.train)
    assert cls.fold_in
    # give user 0 the history of user 5: its scores become user 5's
    hist = sp.lil_array(vae_split.train)
    hist[0] = vae_split.train[[5]]
    hist = sp.csr_array(hist)
    swapped = model.score(torch.tensor([0]), history=hist)
    assert torch.allclose(swapped, model.score(torch.tensor([5])), atol=1e-5)
    assert not torch.allclose(swapped, model.score(torch.tensor([0])), atol=1e-5)
    # a user with no training row is scored from the history it is given
    empty = sp.csr_array((vae_split.shape[0], vae_split.shape[1]), dtype=np.float32)
    from_empty = model.score(torch.tensor([5]), history=empty)
    assert not torch.allclose(from_empty, model.score(torch.tensor([5])), atol=1e-5)


def test_vae_scoring_is_deterministic_in_training_mode(vae_split):
    model = MultVAE().setup(vae_split.train)
    model.train()  # dropout and sampling belong to the loss only
    users = torch.arange(4)
    assert torch.equal(model.score(users), model.score(users))


def test_ease_matches_per_item_ridge_regressions():
    rng = np.random.default_rng(0)
    x = (rng.random((12, 6)) < 0.4).astype(np.float64)
    lam = 2.5
    model = EASE(l2=lam).setup(sp.csr_array(x))
    model.fit(sp.csr_array(x))
    b = model.weights.double().numpy()
    # column j: ridge regression of item j on the other items, without the constraint trick
    for j in range(6):
        others = [i for i in range(6) if i != j]
        a = x[:, others]
        coef = np.linalg.solve(a.T @ a + lam * np.eye(5), a.T @ x[:, j])
        assert np.allclose(b[others, j], coef, atol=1e-5)
        assert b[j, j] == 0.0
    scores = model.score(torch.arange(12)).double().numpy()
    assert np.allclose(scores, x @ b, atol=1e-5)


def test_ease_refuses_a_catalogue_over_its_memory_budget():
    train = sp.csr_array((3, 3000), dtype=np.float32)
    with pytest.raises(ConfigError, match=r"model\.memory_mb"):
        EASE(memory_mb=100).setup(train)
    assert EASE.memory_needed_mb(3000) > 100


def test_ard_prior_update_is_the_second_moment_of_the_codes(vae_split):
    torch.manual_seed(0)
    model = ARDVAE(latent_dim=6, hidden_dims=(12,), n_stat=50).setup(vae_split.train)
    model.eval()
    users = np.flatnonzero(np.diff(vae_split.train.indptr) > 0)
    rng = np.random.default_rng(0)  # the first update's subset
    chosen = np.sort(rng.choice(users, 50, replace=False))
    v = model.update_prior().clone()
    mu, logvar = model.encode(torch.from_numpy(vae_split.train[chosen].toarray()).float())
    expected = (mu.pow(2) + logvar.exp()).mean(dim=0)
    assert torch.allclose(v, expected.clamp_min(model.config.min_prior_var), atol=1e-5)
    assert int(model.prior_updates) == 1
    # the KL in the loss is against this prior, not the standard normal
    model.prior_var.fill_(4.0)
    kl_ard = 0.5 * ((mu.pow(2) + logvar.exp()) / 4.0 - 1 - logvar + np.log(4.0))
    assert torch.allclose(model.kl(mu, logvar), kl_ard.sum(dim=1).mean(), atol=1e-5)
