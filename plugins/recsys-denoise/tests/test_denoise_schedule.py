"""The ADT pieces as pure functions: schedule, truncation count and mask, R-CE weights."""

from __future__ import annotations

import pytest
import torch
from recsys_denoise import drop_rate, n_to_drop, rce_weights, truncation_keep


def test_drop_rate_rises_linearly_then_stays_at_the_maximum():
    assert drop_rate(0, 0.2, 100) == 0.0
    assert drop_rate(25, 0.2, 100) == pytest.approx(0.05)
    assert drop_rate(50, 0.2, 100) == pytest.approx(0.1)
    assert drop_rate(100, 0.2, 100) == pytest.approx(0.2)
    assert drop_rate(10_000, 0.2, 100) == pytest.approx(0.2)
    assert drop_rate(0, 0.2, 0) == pytest.approx(0.2)  # no warm-up


def test_number_dropped_per_batch():
    assert n_to_drop(10, 0.2) == 2
    assert n_to_drop(1024, 0.1) == 102
    assert n_to_drop(7, 0.0) == 0
    # the authors' "batch" base counts the negatives too, and takes it all from the positives
    assert n_to_drop(10, 0.2, n_negatives=1, drop_base="batch") == 4
    assert n_to_drop(10, 0.1, n_negatives=3, drop_base="batch") == 4
    # without negatives both bases agree
    assert n_to_drop(10, 0.2, n_negatives=0, drop_base="batch") == 2
    # a batch always keeps one positive
    assert n_to_drop(3, 0.9, n_negatives=1, drop_base="batch") == 2


def test_truncation_drops_exactly_the_largest_losses():
    losses = torch.tensor([0.3, 2.0, 0.1, 1.5, 0.7, 0.2])
    keep = truncation_keep(losses, 2)
    assert keep.tolist() == [True, False, True, False, True, True]
    assert truncation_keep(losses, 0).all()
    ties = truncation_keep(torch.ones(5), 3)
    assert int((~ties).sum()) == 3


def test_rce_weights_are_the_probability_to_the_power_beta():
    scores = torch.tensor([-2.0, 0.0, 1.0, 4.0], requires_grad=True)
    losses = -torch.nn.functional.logsigmoid(scores)  # BCE of positives
    for beta in (0.0, 0.25, 1.0):
        w = rce_weights(losses, beta)
        assert not w.requires_grad
        assert torch.allclose(w, torch.sigmoid(scores.detach()) ** beta)
    assert torch.equal(rce_weights(losses, 0.0), torch.ones(4))
