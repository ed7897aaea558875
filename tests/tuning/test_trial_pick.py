"""A trial is ranked by the epoch its trainer picks (the saved model), not by the best score
of any epoch: DNIS saves a fine-tuning epoch after pruning, and a warm-start epoch can score
higher."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from recsys.tuning.driver import _trial_row


def _result(rows: list[dict]) -> SimpleNamespace:
    history = pd.DataFrame(rows)
    return SimpleNamespace(
        path="/tmp/exp/trial_t1",
        metrics=rows[-1],
        config={"model.keep_ratio": 0.5},
        metrics_dataframe=history,
        error=None,
        checkpoint=None,
    )


def _row(epoch: int, value: float, best_epoch: int, best: float, diverged: int = 0) -> dict:
    return {
        "epoch": epoch,
        "valid/recall_at_20": value,
        "best_valid/recall_at_20": best,
        "best_epoch": best_epoch,
        "diverged": diverged,
        "trial_id": "t1",
    }


def test_a_trial_is_ranked_by_its_trainers_pick():
    # epochs 0-1 warm start (0.72 at epoch 0), pruning at epoch 3; the trainer re-picks among
    # fine-tuning epochs and saves epoch 4 (0.68)
    rows = [
        _row(1, 0.72, 0, 0.72),
        _row(2, 0.70, 0, 0.72),
        _row(3, 0.60, 2, 0.60),
        _row(4, 0.65, 3, 0.65),
        _row(5, 0.68, 4, 0.68),
    ]
    row = _trial_row(_result(rows), "recall_at_20", 5, {}, {})
    assert (row.best_value, row.best_epoch) == (0.68, 4)


def test_without_the_trainers_pick_the_best_reported_epoch_counts():
    rows = [{k: v for k, v in r.items() if not k.startswith("best")} for r in (
        _row(1, 0.5, 0, 0.5), _row(2, 0.7, 1, 0.7), _row(3, 0.6, 1, 0.7)
    )]  # fmt: skip
    row = _trial_row(_result(rows), "recall_at_20", 3, {}, {})
    assert (row.best_value, row.best_epoch) == (0.7, 1)


def test_a_diverged_last_report_does_not_set_the_pick():
    rows = [_row(1, 0.5, 0, 0.5), _row(2, 0.6, 1, 0.6), _row(3, -1.0, 1, 9.9, diverged=1)]
    row = _trial_row(_result(rows), "recall_at_20", 3, {}, {})
    assert (row.best_value, row.best_epoch) == (0.6, 1)
