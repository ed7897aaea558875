"""Leave-one-out on data without timestamps holds out a random interaction per user, and says
so: "the last interaction" silently meaning a random one changes the protocol."""

from __future__ import annotations

import logging

import numpy as np

from recsys.data.dataset import Dataset, Vocabulary
from recsys.data.split import split_leave_one_out


def _dataset(timestamps: bool) -> Dataset:
    users = np.repeat(np.arange(5), 4)
    items = np.tile(np.arange(4), 5)
    stamps = np.arange(len(users), dtype=float) if timestamps else None
    return Dataset.from_arrays(
        "toy",
        Vocabulary([f"u{u}" for u in range(5)], "user"),
        Vocabulary([f"i{i}" for i in range(4)], "item"),
        users,
        items,
        timestamps=stamps,
    )


def test_loo_without_timestamps_warns_that_the_order_is_random(caplog):
    with caplog.at_level(logging.WARNING, logger="recsys.data.split"):
        split = split_leave_one_out(_dataset(timestamps=False))
    assert split.test.nnz == 5
    assert "toy has no timestamps: leave-one-out holds out a random interaction" in caplog.text


def test_loo_with_timestamps_is_quiet(caplog):
    with caplog.at_level(logging.WARNING, logger="recsys.data.split"):
        split = split_leave_one_out(_dataset(timestamps=True))
    assert split.test.nnz == 5 and not caplog.records
