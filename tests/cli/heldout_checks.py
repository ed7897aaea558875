"""Checks shared by the held-out-user (fold-in) run tests: a run trained under
``split.strategy=heldout_users`` scores, exports and probes its held-out users from their
fold-in rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.cli import main
from recsys.experiment import load_run


def check_evaluate_reproduces_the_run(run: Path, capsys: pytest.CaptureFixture) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["n_users"] > 0 and metrics["test"]["recall_at_20"] > 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test"]["recall_at_20"] == pytest.approx(metrics["test"]["recall_at_20"])


def check_export_encodes_held_out_users(run: Path, out: Path) -> None:
    """The exported user vectors score as the model does from the split's history, and
    held-out users (empty training rows) get their own vectors."""
    assert main(["export", str(run), "--out", str(out)]) == 0
    users = np.load(out / "user_embeddings.npy")
    items = np.load(out / "item_embeddings.npy")
    _cfg, _ds, split, model = load_run(run, "cpu")
    held = np.flatnonzero((np.diff(split.train.indptr) == 0) & (np.diff(split.foldin.indptr) > 0))
    assert len(held) > 1
    with torch.no_grad():
        scores = model.score(torch.from_numpy(held), split.history).numpy()
    np.testing.assert_allclose(users[held] @ items.T, scores, atol=1e-5)
    # from empty training rows every held-out user would get the same vector
    assert not np.allclose(users[held[0]], users[held[1]])


def check_probe_base_metrics_equal_the_runs(run: Path, out: Path) -> None:
    probe = ["--epochs", "1", "--no-tracking", "--quiet", "--no-baselines", "--no-itda"]
    assert main(["probe", str(run), *probe, "-k", "4", "--output-dir", str(out)]) == 0
    quality = json.loads((out / "report.json").read_text())["quality"]
    metrics = json.loads((run / "metrics.json").read_text())
    for part in ("valid", "test"):
        for key in ("ndcg_at_10", "recall_at_20"):
            assert quality[f"{part}_base"][key] == pytest.approx(metrics[part][key], abs=1e-9)
