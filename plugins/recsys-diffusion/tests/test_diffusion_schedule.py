"""The noise schedule, posterior coefficients, timestep embedding and importance sampler,
against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from recsys_diffusion.diffusion import (
    Denoiser,
    GaussianDiffusion,
    ImportanceSampler,
    linear_variance_betas,
    timestep_embedding,
)


def test_linear_variance_betas_by_hand():
    # s = 0.1, alpha in [1e-3, 1e-2], T = 3: variances 1e-4, 5.5e-4, 1e-3
    betas = linear_variance_betas(3, 0.1, 1e-3, 1e-2)
    expected = [1e-4, 1 - (1 - 5.5e-4) / (1 - 1e-4), 1 - (1 - 1e-3) / (1 - 5.5e-4)]
    np.testing.assert_allclose(betas, expected, rtol=1e-12)
    # the cumulative product gives back the linear marginal variance
    np.testing.assert_allclose(1 - np.cumprod(1 - betas), [1e-4, 5.5e-4, 1e-3], rtol=1e-12)


def test_single_step_schedule_uses_noise_min():
    np.testing.assert_allclose(linear_variance_betas(1, 0.5, 0.02, 0.04), [0.01])


@pytest.mark.parametrize(
    ("steps", "scale", "lo", "hi", "one_minus_alpha_bar_T"),
    [
        # the released clean configurations (notes c.1): Yelp 1e-4, ML-1M 3.5e-5, Amazon-book
        # 1e-5 + (5e-7 - 5e-8), where the beta_1 := 1e-5 override dominates
        (5, 1e-2, 1e-3, 1e-2, 1e-4),
        (40, 5e-3, 5e-3, 1e-2, 1e-5 + (5e-5 - 2.5e-5)),
        (5, 1e-4, 5e-4, 5e-3, 1e-5 + (5e-7 - 5e-8)),
    ],
)
def test_final_marginal_variance_of_released_configs(steps, scale, lo, hi, one_minus_alpha_bar_T):
    d = GaussianDiffusion(steps, scale, lo, hi, fix_beta1=True)
    assert float(d.betas[0]) == pytest.approx(1e-5)
    assert 1 - float(d.alphas_cumprod[-1]) == pytest.approx(one_minus_alpha_bar_T, rel=2e-3)


def test_posterior_coefficients_and_snr_weights_by_hand():
    d = GaussianDiffusion(3, 0.1, 1e-3, 1e-2, fix_beta1=False)
    b = np.array([1e-4, 1 - (1 - 5.5e-4) / (1 - 1e-4), 1 - (1 - 1e-3) / (1 - 5.5e-4)])
    ab = np.array([1 - 1e-4, 1 - 5.5e-4, 1 - 1e-3])
    prev = np.array([1.0, ab[0], ab[1]])
    c1 = b * np.sqrt(prev) / (1 - ab)
    c2 = (1 - prev) * np.sqrt(1 - b) / (1 - ab)
    np.testing.assert_allclose(d.coef_x0.numpy(), c1, rtol=1e-5)
    np.testing.assert_allclose(d.coef_xt.numpy(), c2, rtol=1e-5, atol=1e-7)
    # the last reverse step returns x0_hat itself; a constant vector stays (almost) put
    assert float(d.coef_x0[0]) == pytest.approx(1.0) and float(d.coef_xt[0]) == 0.0
    np.testing.assert_allclose((d.coef_x0 + d.coef_xt).numpy(), 1.0, atol=1e-3)
    snr = ab / (1 - ab)
    np.testing.assert_allclose(
        d.snr_weight.numpy(), [1.0, snr[0] - snr[1], snr[1] - snr[2]], rtol=1e-4
    )


def test_x0_weight_is_the_suffix_product_of_c2():
    d = GaussianDiffusion(4, 0.1, 1e-3, 1e-2)
    c2 = d.coef_xt.double().numpy()
    a = d.x0_weight_from(torch.arange(5)).double().numpy()
    expected = [np.prod(c2[k:]) for k in range(4)] + [1.0]
    np.testing.assert_allclose(a, expected, rtol=1e-5)
    assert a[0] == 0.0 and a[4] == 1.0


def test_zero_noise_makes_q_sample_the_identity():
    d = GaussianDiffusion(5, 0.0, 1e-3, 1e-2)
    x = torch.rand(4, 7)
    assert torch.equal(d.q_sample(x, torch.tensor([0, 1, 2, 4])), x)
    assert torch.equal(d.snr_weight, torch.ones(5))


def test_q_sample_moments():
    torch.manual_seed(0)
    d = GaussianDiffusion(2, 0.5, 0.1, 0.2, fix_beta1=False)  # variances 0.05, 0.1
    x0 = torch.ones(20000, 1)
    xt = d.q_sample(x0, torch.ones(20000, dtype=torch.long))
    assert float(xt.mean()) == pytest.approx(math.sqrt(0.9), abs=0.01)
    assert float(xt.var()) == pytest.approx(0.1, abs=0.01)


def test_timestep_embedding():
    emb = timestep_embedding(torch.tensor([0, 3]), 7)
    assert emb.shape == (2, 7)
    assert torch.equal(emb[0], torch.tensor([1.0, 1, 1, 0, 0, 0, 0]))
    freqs = torch.exp(-math.log(10000.0) * torch.arange(3) / 3)
    assert torch.allclose(emb[1, :3], torch.cos(3 * freqs))
    assert torch.allclose(emb[1, 3:6], torch.sin(3 * freqs))


def test_denoiser_widths_mirror_the_hidden_dims():
    net = Denoiser(50, [30, 20], emb_size=4)
    shapes = [tuple(layer.weight.shape) for layer in net.layers]
    assert shapes == [(30, 54), (20, 30), (30, 20), (50, 30)]
    out = net(torch.rand(3, 50), torch.tensor([0, 1, 2]), drop=False)
    assert out.shape == (3, 50)


def test_importance_sampler_is_uniform_until_every_step_has_its_history():
    s = ImportanceSampler(3, history=2)
    s.update(torch.tensor([0, 0, 1]), torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(s.weights(), torch.full((3,), 1 / 3))
    assert s.loss_count.tolist() == [2, 1, 0]


def test_importance_weights_by_hand():
    s = ImportanceSampler(3, history=2, uniform_mix=0.001)
    # step 0 sees 1, 2, 3 (keeps the last two: 2, 3), step 1 sees 4, 4, step 2 sees 1, 1
    s.update(torch.tensor([0, 0, 1, 2]), torch.tensor([1.0, 2.0, 4.0, 1.0]))
    s.update(torch.tensor([0, 1, 2]), torch.tensor([3.0, 4.0, 1.0]))
    assert s.loss_history.tolist() == [[2.0, 3.0], [4.0, 4.0], [1.0, 1.0]]
    raw = np.array([math.sqrt((4 + 9) / 2), 4.0, 1.0])
    expected = raw / raw.sum() * 0.999 + 0.001 / 3
    np.testing.assert_allclose(s.weights().numpy(), expected, rtol=1e-6)
    torch.manual_seed(0)
    t, pt = s.sample(30000, torch.device("cpu"))
    np.testing.assert_allclose(pt.numpy(), expected[t.numpy()], rtol=1e-6)
    freq = np.bincount(t.numpy(), minlength=3) / len(t)
    np.testing.assert_allclose(freq, expected, atol=0.01)
