"""Leave-one-out on data without timestamps holds out a random interaction per user, and says
so: "the last interaction" silently meaning a random one changes the protocol."""

from __future__ import annotations

import logging

import numpy as np

from recsys.data.split import split_leave_one_out
from tests.conftest import grid_dataset


def test_loo_without_timestamps_warns_that_the_order_is_random(caplog):
    with caplog.at_level(logging.WARNING, logger="recsys.data.split"):
        split = split_leave_one_out(grid_dataset(5, 4))
    assert split.test.nnz == 5
    assert "grid has no timestamps: leave-one-out holds out a random interaction" in caplog.text


def test_loo_with_timestamps_is_quiet(caplog):
    with caplog.at_level(logging.WARNING, logger="recsys.data.split"):
        split = split_leave_one_out(grid_dataset(5, 4, np.arange(20.0)))
    assert split.test.nnz == 5 and not caplog.records
