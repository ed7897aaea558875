"""A `recsys train` run's MLflow record names the selected epoch's validation metrics
(``best_valid/*``, as a tune experiment does for its best trial) beside the per-epoch
``valid/*`` history, whose last points are the last epoch's; user counts are not metrics."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from recsys.cli import main


def test_a_train_run_logs_its_best_epochs_validation_metrics(tmp_path: Path) -> None:
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    args = ["train", "-m", "bpr", "--dataset", "synthetic-120x80x2400", "-o", str(tmp_path)]
    args += ["--tracking-uri", uri, "--quiet", "--set", "train.epochs=6"]
    args += ["--set", "train.learning_rate=0.05", "--set", "eval.item_slices=true"]
    assert main(args) == 0
    (run_dir,) = (p.parent for p in tmp_path.glob("*/metrics.json"))
    saved = json.loads((run_dir / "metrics.json").read_text())
    run_id = json.loads((run_dir / "run.json").read_text())["tracking_run_id"]
    logged = mlflow.MlflowClient(uri).get_run(run_id).data.metrics
    for name, value in saved["valid"].items():
        if name.startswith("n_users"):
            assert f"best_valid/{name}" not in logged and f"valid/{name}" not in logged
        elif value is not None:
            assert logged[f"best_valid/{name}"] == value, name
    assert logged["best_epoch"] == saved["best_epoch"]
    assert not [key for key in logged if "n_users" in key]
