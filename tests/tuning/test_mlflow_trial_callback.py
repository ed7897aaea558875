"""The MLflow trial callback logs each epoch of a trial once: a trial restored from a
checkpoint older than its last report (Ray delivers results at least once) reports that epoch
again, after a resume, and its child run must not get a second point."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import mlflow

from recsys.tracking import MlflowTracker
from recsys.tuning.callbacks import MlflowTrialCallback


def _result(epoch: int) -> dict[str, float]:
    return {"epoch": epoch, "valid/ndcg_at_10": 0.1 * epoch, "epoch_seconds": 1.0}


def test_an_epoch_reported_again_after_a_resume_is_logged_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    parent = MlflowTracker(uri, "tune")
    parent.start("parent", {})
    trial = SimpleNamespace(trial_id="t1", config={"train.learning_rate": 0.01})
    base = {"model": {"name": "pop"}, "train": {"epochs": 5}}
    args = (uri, "tune", str(parent.run_id), base, tmp_path / "runs.json")

    first = MlflowTrialCallback(*args)
    first.on_trial_start(0, [], trial)
    for epoch in (1, 2, 3):
        first.on_trial_result(0, [], trial, _result(epoch))
    # the experiment is interrupted; Ray pickled the callback with the experiment state
    resumed = pickle.loads(pickle.dumps(first))
    resumed.on_trial_start(0, [], trial)
    for epoch in (3, 4):  # restored from the epoch-2 checkpoint: epoch 3 comes again
        resumed.on_trial_result(0, [], trial, _result(epoch))
    trial.last_result = _result(4)
    resumed.on_trial_complete(0, [], trial)

    client = mlflow.MlflowClient(uri)
    run_id = resumed.run_ids()["t1"]
    steps = sorted(m.step for m in client.get_metric_history(run_id, "valid/ndcg_at_10"))
    assert steps == [0, 1, 2, 3]  # 0-based epoch indices, each once
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_refused_trial_logs_no_placeholder_and_its_run_fails(tmp_path: Path) -> None:
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    parent = MlflowTracker(uri, "tune")
    parent.start("parent", {})
    trial = SimpleNamespace(trial_id="t1", config={"model.warm_start_epochs": 25})
    base = {"model": {"name": "pop"}, "train": {"epochs": 5}}
    callback = MlflowTrialCallback(uri, "tune", str(parent.run_id), base, tmp_path / "runs.json")
    callback.on_trial_start(0, [], trial)
    # what the trainable reports when the trial's config is refused (it ends without an error)
    refused = {"epoch": 0, "valid/ndcg_at_10": 0.0, "refused": 1, "refusal": "too few epochs"}
    callback.on_trial_result(0, [], trial, refused)
    trial.last_result = refused
    callback.on_trial_complete(0, [], trial)

    client = mlflow.MlflowClient(uri)
    run = client.get_run(callback.run_ids()["t1"])
    assert run.info.status == "FAILED"
    assert "valid/ndcg_at_10" not in run.data.metrics
    assert run.data.tags["recsys.refusal"] == "too few epochs"
