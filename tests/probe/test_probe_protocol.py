"""`recsys probe` measures the model under its run's own evaluation protocol: the probe's
unedited ("base") metrics equal the run's metrics.json, for held-out-user splits (a fold-in
model's users are encoded from their fold-in rows) and for MMRec's test protocol
(``eval.mask_valid_at_test=false``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsys.cli import main

DATA = "synthetic-200x80x3000"
TRAIN = ["--set", "train.epochs=2", "--set", "train.num_threads=1", "--quiet", "--no-tracking"]
PROBE = ["--epochs", "1", "--no-tracking", "--quiet", "--no-baselines", "--no-itda", "-k", "4"]


def _train_and_probe(out: Path, name: str, model: str, settings: list[str]) -> tuple[dict, dict]:
    args = ["train", "--model", model, "--dataset", DATA, "-o", str(out), *TRAIN]
    assert main([*args, *settings, "--set", f"run_name={name}"]) == 0
    run = out / name
    report_dir = out / f"{name}-probe"
    assert main(["probe", str(run), *PROBE, "--output-dir", str(report_dir)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    report = json.loads((report_dir / "report.json").read_text())
    return metrics, report["quality"]


def _assert_same(run_metrics: dict, probe_metrics: dict) -> None:
    shared = sorted(set(run_metrics) & set(probe_metrics) - {"n_users"})
    assert "ndcg_at_10" in shared and "recall_at_20" in shared
    for key in shared:
        assert probe_metrics[key] == pytest.approx(run_metrics[key], rel=1e-6, abs=1e-9), key


def test_probe_of_a_held_out_user_run_encodes_users_from_their_fold_in_rows(tmp_path):
    # Mult-VAE with whole users held out: those users have no training row; the run scores
    # them from their fold-in items, and so must the probe's user site (an empty row gave a
    # valid NDCG far below the run's, and an SAE "retention" measured against it)
    split = ["--set", "split.strategy=heldout_users", "--set", "split.heldout_users=[0.2, 0.2]"]
    metrics, quality = _train_and_probe(tmp_path, "vae", "multvae", split)
    _assert_same(metrics["valid"], quality["valid_base"])
    _assert_same(metrics["test"], quality["test_base"])


@pytest.mark.parametrize("mask_valid", [True, False])
def test_probe_test_metrics_follow_the_runs_mask_valid_at_test(tmp_path, mask_valid):
    setting = ["--set", f"eval.mask_valid_at_test={str(mask_valid).lower()}"]
    metrics, quality = _train_and_probe(tmp_path, "bpr", "bpr", setting)
    _assert_same(metrics["valid"], quality["valid_base"])
    _assert_same(metrics["test"], quality["test_base"])


def test_probe_compare_encodes_a_held_out_runs_users_from_its_own_fold_in_rows(
    tmp_path, monkeypatch
):
    # the probed run has an ordinary split; the compared Mult-VAE held users out, so its
    # held-out users' training rows are empty and only its own split's history encodes them
    import recsys.probe.pipeline as pipeline
    from recsys.data.split import Split

    args = ["train", "--model", "multvae", "--dataset", DATA, "-o", str(tmp_path), *TRAIN]
    assert main([*args, "--set", "run_name=plain"]) == 0
    held = ["--set", "split.strategy=heldout_users", "--set", "split.heldout_users=[0.2, 0.2]"]
    assert main([*args, *held, "--set", "run_name=held"]) == 0
    calls = []
    original = pipeline.collect_representations

    def spy(model, history=None):
        calls.append(history)
        return original(model, history)

    monkeypatch.setattr(pipeline, "collect_representations", spy)
    probe = ["--epochs", "1", "--no-tracking", "--quiet", "--no-baselines", "-k", "4"]
    runs = [str(tmp_path / "plain"), "--compare", str(tmp_path / "held")]
    assert main(["probe", *runs, *probe, "--output-dir", str(tmp_path / "probe")]) == 0
    # the probed site is collected once, when it is checked before the MLflow run opens
    probed, compared = calls
    assert probed is None  # the probed run has no held-out users
    held_split = Split.load(tmp_path / "held" / "split.npz")
    held_out = (np.diff(held_split.train.indptr) == 0) & (np.diff(held_split.foldin.indptr) > 0)
    assert held_out.sum() > 0
    assert compared is not None and (compared != held_split.history).nnz == 0

    # and the other way round: the compared run has no held-out users, so its own training
    # rows (not the probed run's history) encode its users
    calls.clear()
    runs = [str(tmp_path / "held"), "--compare", str(tmp_path / "plain")]
    assert main(["probe", *runs, *probe, "--output-dir", str(tmp_path / "probe-2")]) == 0
    probed, compared = calls
    assert (probed != held_split.history).nnz == 0
    plain_train = Split.load(tmp_path / "plain" / "split.npz").train
    assert compared is not None and (compared != plain_train).nnz == 0
