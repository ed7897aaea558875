r"""The pieces of adaptive denoising training (ADT) as pure functions.

From `"Denoising Implicit Feedback for Recommendation" <https://arxiv.org/abs/2006.04153>`_
(Wang et al., WSDM 2021):

- the drop-rate schedule :math:`\varepsilon(t) = \varepsilon_{max}\min(t / N, 1)`, with
  :math:`t` the global mini-batch step;
- truncation (T-CE): drop the :math:`\lfloor\varepsilon(t)\,B\rfloor` largest-loss positives of
  a batch and average the loss over the rest;
- reweighting (R-CE): weight a positive's loss by :math:`\omega = \sigma(\hat{y})^\beta`,
  which for a loss that is a negative log-likelihood :math:`\ell = -\ln\sigma(\hat{y})` is
  :math:`\omega = e^{-\beta\ell}` (no gradient flows through :math:`\omega`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

DropBase = Literal["positives", "batch"]


def drop_rate(step: int, max_drop_rate: float, num_gradual: int) -> float:
    r"""The drop rate at global step ``step``:
    :math:`\varepsilon(t) = \varepsilon_{max}\min(t / N, 1)`.

    Linear from 0 at step 0 to ``max_drop_rate`` at step ``num_gradual`` (``N``), then flat.
    (The authors' code indexes ``linspace(0, eps_max, N)``, which reaches the maximum one step
    earlier.) ``num_gradual = 0`` starts at the maximum.
    """
    if num_gradual <= 0:
        return float(max_drop_rate)
    return float(max_drop_rate) * min(max(int(step), 0) / num_gradual, 1.0)


def n_to_drop(
    n_positives: int, rate: float, n_negatives: int = 0, drop_base: DropBase = "positives"
) -> int:
    r"""How many of a batch's ``n_positives`` positives to drop at drop rate ``rate``.

    ``drop_base="positives"``: :math:`\lfloor \varepsilon B \rfloor` of the :math:`B`
    positives. ``drop_base="batch"`` is the authors' code: the rate applies to the whole batch
    of positives *and* sampled negatives, :math:`\lfloor \varepsilon B (1 + n) \rfloor` with
    :math:`n` negatives per positive, and since negatives are never dropped all of it falls on
    the positives (so with one negative per positive, :math:`2\varepsilon` of the positives).
    Capped at :math:`B - 1`, so a batch always keeps a positive.
    """
    total = n_positives * (1 + n_negatives) if drop_base == "batch" else n_positives
    # the small epsilon keeps a product such as 0.2 * 10 = 1.9999999 from losing a drop
    n = math.floor(rate * total + 1e-9)
    return max(0, min(n, n_positives - 1))


def truncation_keep(losses: Tensor, n_drop: int) -> Tensor:
    r"""Boolean mask ``[B]`` that is False on the ``n_drop`` largest entries of ``losses``.

    Ties are broken by position (the earlier example is dropped first), so the mask has exactly
    ``B - n_drop`` True entries.
    """
    keep = torch.ones_like(losses, dtype=torch.bool)
    if n_drop > 0:
        dropped = torch.topk(losses.detach(), n_drop, sorted=False).indices
        keep[dropped] = False
    return keep


def rce_weights(losses: Tensor, beta: float) -> Tensor:
    r"""R-CE weights :math:`\omega_b = e^{-\beta \ell_b}` ``[B]``, detached.

    For :math:`\ell = -\ln p` (BCE on a positive, :math:`p = \sigma(\hat{y}_{ui})`; BPR,
    :math:`p = \sigma(\hat{y}_{ui} - \hat{y}_{uj})`) this is :math:`p^\beta`, the paper's
    :math:`\sigma(\hat{y})^\beta`: confident positives keep their weight, hard ones (likely
    false positives) are down-weighted. :math:`\beta = 0` gives the plain loss.
    """
    return torch.exp(-beta * losses.detach())


def positive_truncation_keep(
    losses: Tensor, positive: Tensor, rate: float, drop_base: DropBase = "positives"
) -> Tensor:
    r"""T-CE on a pointwise batch: boolean mask ``[B]`` that is False on the largest-loss
    positives, never on a negative.

    ``positive`` ``[B]`` marks the positives (label 1) among the batch's positives and sampled
    negatives. Like the authors' code, the examples are ranked on :math:`\ell \cdot y`, so a
    negative never ranks among the dropped (here its key is :math:`-\infty`, so that a
    positive whose loss underflows to 0 cannot tie with it). The number dropped is
    :math:`\lfloor \varepsilon P \rfloor` of the batch's :math:`P` positives with
    ``drop_base="positives"``, and :math:`\lfloor \varepsilon B \rfloor` of the whole batch
    with ``"batch"``, the authors' count (they keep :math:`\lfloor (1-\varepsilon) B\rfloor`, which
    can keep one fewer), all of it from the positives. Capped at :math:`P - 1`, so a batch
    with positives keeps one, as :func:`n_to_drop`. Ties are broken by position (the earlier
    example is dropped first). Computed on the device, without a host sync.
    """
    positive = positive.to(torch.bool)
    n_pos = positive.sum()
    total = torch.full_like(n_pos, len(losses)) if drop_base == "batch" else n_pos
    # float64, as n_to_drop's Python arithmetic (the epsilon keeps 0.2 * 10 at 2)
    n_drop = torch.floor(total.to(torch.float64) * rate + 1e-9)
    n_drop = torch.minimum(n_drop, (n_pos - 1).to(torch.float64)).clamp_min(0)
    key = torch.where(positive, losses.detach(), torch.full_like(losses, -torch.inf))
    order = torch.sort(key, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    return rank >= n_drop
