"""The ARD prior finds the planted dimension; the collapse diagnostics flag a far too high beta."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from recsys_vae import ARDVAE, MultVAE

from recsys.data.split import split_ratio
from recsys.data.synthetic import make_synthetic
from recsys.train.trainer import TrainConfig, Trainer

N_FACTORS = 8


def _fit(model, split, epochs, lr=1e-2):
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=100,
        learning_rate=lr,
        patience=1000,
        progress=False,
        valid_metric="ndcg_at_10",
        seed=0,
    )
    return Trainer(model, split, cfg).fit()


@pytest.mark.parametrize(
    "hidden", [(), pytest.param((100,), marks=pytest.mark.slow)], ids=["linear", "mlp"]
)
def test_ard_recovers_the_planted_number_of_factors(hidden, caplog):
    # 8 planted factors; a 64-dimensional latent, the full ELBO (beta 1)
    ds = make_synthetic(
        600,
        200,
        600 * 60,
        n_factors=N_FACTORS,
        temperature=0.15,
        seed=3,
        modalities={},
        genres=False,
    )
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=0)
    model = ARDVAE(latent_dim=64, hidden_dims=hidden, anneal_cap=1.0, total_anneal_steps=0)
    with caplog.at_level(logging.INFO, logger="recsys_vae"):
        result = _fit(model, split, epochs=80)
    relevant = model.relevant_dims()
    assert abs(len(relevant) - N_FACTORS) <= 2, model.last_stats.usage_ratio
    # reported every epoch, and in the log
    assert result.history[-1]["relevant_dims"] == len(relevant)
    assert any("relevant latent dimensions" in r.message for r in caplog.records)
    # the unused axes carry no spread of means: Var(mu)/v about 0 against about 1
    ratio = np.sort(model.last_stats.usage_ratio)[::-1]
    assert ratio[len(relevant) - 1] > 0.5 > 0.2 > ratio[len(relevant) + 2]


def test_collapse_is_flagged_when_beta_is_far_too_high(vae_split, caplog):
    sane = MultVAE(latent_dim=16, hidden_dims=(64,), anneal_cap=0.2, total_anneal_steps=0)
    _fit(sane, vae_split, epochs=15, lr=3e-3)
    high = MultVAE(latent_dim=16, hidden_dims=(64,), anneal_cap=50.0, total_anneal_steps=0)
    with caplog.at_level(logging.WARNING, logger="recsys_vae"):
        result = _fit(high, vae_split, epochs=15, lr=3e-3)
    last = result.history[-1]
    assert last["beta"] == 50.0
    assert last["active_units"] == 0 and last["collapsed_fraction"] == 1.0
    assert last["collapsed_dims_eps"] == 16 and last["kl_total"] < 0.1
    assert any("posterior collapse" in r.message for r in caplog.records)
    ok = sane.collapse_stats()
    assert ok.active_units >= 4 and ok.kl_total > 1.0
    assert ok.collapsed_fraction < 0.75


@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_relevance_threshold_is_the_usage_ratio_cut(vae_split, threshold):
    model = ARDVAE(latent_dim=6, hidden_dims=(), relevance_threshold=threshold)
    model.setup(vae_split.train)
    stats = model.collapse_stats()
    stats.usage_ratio = np.array([0.9, 0.1, 0.5, 0.65, 0.0, 0.8])
    expected = [i for i in (0, 5, 3, 2) if stats.usage_ratio[i] > threshold]
    assert model.relevant_dims(stats).tolist() == expected
