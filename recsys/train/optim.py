"""Optimisers for embedding tables whose gradients are row-sparse."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class LazyAdam(torch.optim.Optimizer):
    r"""Adam that updates only the rows present in a row-sparse gradient ("lazy" Adam).

    For the rows :math:`R` of the batch, with gradient rows :math:`\mathbf{g}_r` (duplicates
    summed) and the optimiser's step count :math:`t`,

    .. math::
        \mathbf{m}_r \leftarrow \beta_1\mathbf{m}_r + (1-\beta_1)\mathbf{g}_r,\qquad
        \mathbf{v}_r \leftarrow \beta_2\mathbf{v}_r + (1-\beta_2)\mathbf{g}_r^2,

    .. math::
        \boldsymbol{\theta}_r \leftarrow \boldsymbol{\theta}_r - \eta\,
            \frac{\mathbf{m}_r / (1-\beta_1^t)}{\sqrt{\mathbf{v}_r / (1-\beta_2^t)} + \epsilon},

    and rows outside :math:`R` keep their parameters and moments: the rule of
    :class:`torch.optim.SparseAdam`, except where :math:`\epsilon` enters. Here, as in
    :class:`torch.optim.Adam`, it is added after the bias correction of
    :math:`\sqrt{\mathbf{v}_r}`; ``SparseAdam`` adds it before, which amounts to
    :math:`\epsilon/\sqrt{1-\beta_2^t}` in the formula above (about :math:`32\epsilon` at
    the first step). The two agree closely while gradients are much larger than
    :math:`\epsilon` and differ for gradients near it. The other difference is cost: every
    operation here is a gather, an element-wise op on the :math:`|R|` rows, or a scatter, so a
    step costs :math:`O(|R|\,d)` however large the table. (``SparseAdam`` adds sparse tensors
    into the dense moments, which on CPU is a pass over the whole table: per step it costs
    :math:`O(|\text{table}|)`, and an epoch grows with interactions times table size.)
    Dense gradients get the ordinary Adam update.

    Args:
        params: parameters (or parameter groups).
        lr (float): learning rate :math:`\eta`.
        betas (tuple[float, float]): :math:`(\beta_1, \beta_2)`.
        eps (float): :math:`\epsilon`.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                grad = p.grad
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    if grad.is_sparse:
                        # first and second moments side by side in one row, so a step reads
                        # and writes each touched row once
                        state["moments"] = p.new_zeros((p.shape[0], 2, *p.shape[1:]))
                    else:
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                step_size = lr / (1 - beta1**t)
                root_bias2 = math.sqrt(1 - beta2**t)
                if not grad.is_sparse:
                    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                    exp_avg.lerp_(grad, 1 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    denom = (exp_avg_sq.sqrt() / root_bias2).add_(eps)
                    p.addcdiv_(exp_avg, denom, value=-step_size)
                    continue
                grad = grad.coalesce()  # unique rows, duplicates summed
                rows, values = grad.indices()[0], grad.values()
                moments = state["moments"]
                touched = moments.index_select(0, rows)
                m, v = touched[:, 0], touched[:, 1]
                m.lerp_(values, 1 - beta1)
                v.mul_(beta2).addcmul_(values, values, value=1 - beta2)
                moments.index_copy_(0, rows, touched)
                denom = v.sqrt().div_(root_bias2).add_(eps)
                # gather, update, scatter: the rows are unique, and index_copy_ is about twice
                # as fast as index_add_ on CPU
                p.index_copy_(0, rows, p.index_select(0, rows).addcdiv_(m, denom, value=-step_size))
        return loss
