"""LazyAdam: the lazy Adam rule on row-sparse gradients, checked against torch's SparseAdam."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recsys.train.optim import LazyAdam


def _run(optimizer_class, steps: int = 25) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(40, 6))
    optimizer = optimizer_class([table], lr=0.02)
    gen = torch.Generator().manual_seed(1)
    snapshots = []
    for _ in range(steps):
        # duplicates in the batch: their gradients must be summed before the moment update
        rows = torch.randint(0, 40, (15,), generator=gen)
        weights = torch.randn(15, 6, generator=gen)
        optimizer.zero_grad()
        (F.embedding(rows, table, sparse=True) * weights).sum().backward()
        optimizer.step()
        snapshots.append(table.detach().clone())
    return table.detach(), snapshots


def test_lazy_adam_matches_sparse_adam_step_by_step():
    _, ours = _run(LazyAdam)
    _, reference = _run(torch.optim.SparseAdam)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_lazy_adam_leaves_rows_outside_the_batch_untouched():
    table = torch.nn.Parameter(torch.randn(10, 3))
    before = table.detach().clone()
    optimizer = LazyAdam([table], lr=0.1)
    F.embedding(torch.tensor([2, 2, 7]), table, sparse=True).sum().backward()
    optimizer.step()
    changed = (table.detach() != before).any(dim=1)
    assert changed.tolist() == [i in (2, 7) for i in range(10)]
    moments = optimizer.state[table]["moments"]  # [rows, (first, second), dim]
    assert moments[[0, 1, 3]].abs().sum() == 0
    assert (moments[[2, 7]].abs().sum(dim=(1, 2)) > 0).all()


def test_lazy_adam_dense_gradients_follow_adam():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 4))
    b = torch.nn.Parameter(a.detach().clone())
    ours, reference = LazyAdam([a], lr=0.05), torch.optim.Adam([b], lr=0.05)
    for _ in range(10):
        for p, opt in ((a, ours), (b, reference)):
            opt.zero_grad()
            (p**2).sum().backward()
            opt.step()
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"betas": (0.9, 1.0)}, {"eps": 0.0}])
def test_lazy_adam_rejects_bad_hyper_parameters(kwargs):
    with pytest.raises(ValueError):
        LazyAdam([torch.nn.Parameter(torch.zeros(2))], **kwargs)
