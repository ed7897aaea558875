"""`recsys tune` end to end on a local Ray: ASHA, MLflow, faults, interrupt and resume.

One Ray instance serves the whole module (``local_ray``); the ASHA experiment runs once
(``asha``) and several tests read what it left behind.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest
import yaml
from ray.tune import Callback

from recsys.cli import main
from recsys.config import build_run_config
from recsys.tuning.driver import TuneOptions, run_tune
from recsys.tuning.space import parse_space
from recsys.tuning.trainable import InjectedFault
from tests.tuning.conftest import DATA, FAST, run_tune_cli

pytestmark = pytest.mark.usefixtures("local_ray")

LEARNING_RATES = [0.05, 0.01, 0.001, 0.0001]
"""Grid order: the two strong rates start first, so the weak ones meet a filled rung."""


def _trial_results(experiment_dir: Path) -> dict[str, list[dict]]:
    """Every result Ray recorded, per trial id, read from the trials' result.json files."""
    out = {}
    for path in sorted((experiment_dir / "ray").glob("trial_*/result.json")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[path.parent.name.removeprefix("trial_")] = rows
    return out


@pytest.fixture(scope="module")
def asha(local_ray, tmp_path_factory) -> SimpleNamespace:
    """A 4-trial ASHA experiment over learning rates, tracked in a sqlite MLflow store."""
    root = tmp_path_factory.mktemp("asha")
    space = root / "space.yaml"
    space.write_text(
        "fixed:\n  train.epochs: 8\n  train.patience: 8\n"
        f"params:\n  train.learning_rate: {{type: grid, values: {LEARNING_RATES}}}\n"
    )
    uri = f"sqlite:///{(root / 'mlflow.db').as_posix()}"
    code, stdout = run_tune_cli(
        "--model", "bpr", "--dataset", DATA, "--space", str(space), "--num-samples", "1",
        "-o", str(root / "runs"), "--name", "asha", "--tracking-uri", uri,
        "--scheduler", "asha", "--grace-period", "2", "--reduction-factor", "2",
        "--max-concurrent", "2", "--quiet", *FAST,
    )  # fmt: skip
    folder = root / "runs" / "asha"
    return SimpleNamespace(
        code=code,
        stdout=stdout,
        folder=folder,
        uri=uri,
        summary=json.loads((folder / "summary.json").read_text()) if code == 0 else {},
        trials=pd.read_csv(folder / "trials.csv") if code == 0 else None,
        results=_trial_results(folder),
    )


def test_asha_stops_at_least_one_trial_early(asha):
    assert asha.code == 0, asha.stdout
    trials = asha.trials
    assert len(trials) == 4
    stopped = trials[trials["stop_reason"] == "scheduler"]
    assert len(stopped) >= 1
    assert (stopped["epochs"] < 8).all()
    # the rung is at epoch 2 (grace period), so a stopped trial ran 2 or 4 epochs
    assert set(stopped["epochs"]) <= {2, 4}
    assert (trials.loc[trials["stop_reason"] == "completed", "epochs"] == 8).all()
    assert asha.summary["total_trial_epochs"] == trials["epochs"].sum() < 4 * 8


def test_the_best_trial_is_the_best_by_validation(asha):
    best_by_trial = {
        trial_id: max(row["valid/ndcg_at_10"] for row in rows)
        for trial_id, rows in asha.results.items()
    }
    expected = max(best_by_trial, key=best_by_trial.get)
    best = asha.summary["best"]
    assert best["trial_id"] == expected
    assert best["best_valid_ndcg_at_10"] == pytest.approx(best_by_trial[expected])
    # the driver's re-evaluation of the saved best epoch gives the same validation value
    assert best["valid"]["ndcg_at_10"] == pytest.approx(best_by_trial[expected], abs=1e-6)
    rows = asha.results[expected]
    assert best["params"]["train.learning_rate"] == rows[0]["config"]["train.learning_rate"]
    config = yaml.safe_load((asha.folder / "best_config.yaml").read_text())
    assert config["train"]["learning_rate"] == best["params"]["train.learning_rate"]
    assert set(best["test"]) >= {"ndcg_at_10", "recall_at_20"}


def test_no_test_metric_reaches_ray(asha):
    assert len(asha.results) == 4
    for rows in asha.results.values():
        for row in rows:
            assert "valid/ndcg_at_10" in row
            assert not [key for key in row if "test" in key.lower()], row.keys()
    for progress in (asha.folder / "ray").glob("trial_*/progress.csv"):
        header = progress.read_text().splitlines()[0]
        assert "test" not in header.lower()


def test_outputs_table_csv_and_a_best_config_train_accepts(asha, tmp_path):
    assert "best ndcg_at_10" in asha.stdout
    assert f"experiment folder: {asha.folder}" in asha.stdout
    assert "tested once" in asha.stdout
    # --quiet: no Ray console output (its experiment header, TensorBoard hint) in between
    assert "Configuration for experiment" not in asha.stdout
    assert "tensorboard" not in asha.stdout.lower()
    trials = asha.trials
    columns = {"trial_id", "status", "stop_reason", "epochs", "best_epoch", "best_ndcg_at_10",
               "train.learning_rate", "failures", "restores", "mlflow_run_id"}  # fmt: skip
    assert columns <= set(trials)
    assert sorted(trials["train.learning_rate"]) == sorted(LEARNING_RATES)
    # where each trial trained: no GPU here, so the CPU, on this machine's Ray node
    assert set(trials["device"]) == {"cpu"} and trials["node_ip"].notna().all()
    assert trials["best_ndcg_at_10"].is_monotonic_decreasing  # best first
    for name in ("best_model.pt", "base_config.yaml", "space.yaml", "split.npz", "tune.json"):
        assert (asha.folder / name).is_file(), name
    assert (asha.folder / "trials.png").read_bytes().startswith(b"\x89PNG")
    # `recsys train -c best_config.yaml` takes the file as it is
    best_config = asha.folder / "best_config.yaml"
    code = main(["train", "-c", str(best_config), "--no-tracking", "-o", str(tmp_path), "--quiet"])
    assert code == 0
    (run,) = tmp_path.glob("*/config.yaml")
    trained = yaml.safe_load(run.read_text())
    wanted = yaml.safe_load(best_config.read_text())
    trained["train"].pop("progress"), wanted["train"].pop("progress")  # --quiet sets it
    assert trained["model"] == wanted["model"] and trained["train"] == wanted["train"]
    # epochs are numbered alike: the trial's best epoch is the retrained run's, 0-based
    best = asha.summary["best"]
    row = trials.set_index("trial_id").loc[best["trial_id"]]
    retrained = json.loads((run.parent / "metrics.json").read_text())
    if row["stop_reason"] == "completed":
        assert retrained["best_epoch"] == best["best_epoch"] == row["best_epoch"]
    assert f"(epoch {best['best_epoch']})" in asha.stdout
    assert f"at epoch {best['best_epoch']}\n" in best_config.read_text()


def test_mlflow_parent_and_child_runs(asha):
    client = mlflow.MlflowClient(asha.uri)
    parent_id = asha.summary["tracking"]["parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    params = parent.data.params
    assert params["tune.scheduler"] == "asha" and params["tune.num_samples"] == "1"
    assert params["space.train.learning_rate"].startswith("grid(")
    assert "train.learning_rate" not in params  # sampled: no base value on the parent
    assert params["model.embedding_size"] == "32"  # not sampled: the base value
    assert params["model.name"] == "bpr" and params["train.epochs"] == "8"
    best = asha.summary["best"]
    assert params["best.train.learning_rate"] == str(best["params"]["train.learning_rate"])
    assert parent.data.tags["best_trial_id"] == best["trial_id"]
    assert parent.data.metrics["test/ndcg_at_10"] == pytest.approx(best["test"]["ndcg_at_10"])
    assert parent.data.metrics["best_valid/ndcg_at_10"] == pytest.approx(
        best["valid"]["ndcg_at_10"]
    )
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {
        "best_config.yaml",
        "trials.csv",
        "trials.png",
        "summary.json",
        "space.yaml",
    } <= artifacts

    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert len(children) == 4
    by_trial = {child.data.tags["trial_id"]: child for child in children}
    assert by_trial[best["trial_id"]].info.run_id == parent.data.tags["best_run_id"]
    epochs = dict(zip(asha.trials["trial_id"], asha.trials["epochs"], strict=True))
    for trial_id, child in by_trial.items():
        assert child.info.status == "FINISHED"
        assert child.data.params["model.embedding_size"] == "32"
        lr = asha.results[trial_id][0]["config"]["train.learning_rate"]
        assert float(child.data.params["train.learning_rate"]) == lr
        history = client.get_metric_history(child.info.run_id, "valid/ndcg_at_10")
        assert sorted(m.step for m in history) == list(range(epochs[trial_id]))  # 0-based
        reported = [row["valid/ndcg_at_10"] for row in asha.results[trial_id]]
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(reported)
        assert len(client.get_metric_history(child.info.run_id, "train/loss")) == len(history)
        assert not [key for key in child.data.metrics if key.startswith("test")]


def _base(tmp_path: Path, *overrides: str):
    return build_run_config(
        None,
        ["train.batch_size=256", "train.progress=false", *overrides],
        model={"name": "bpr", "embedding_size": 16},
        data={"name": DATA},
        tracking={"enabled": False},
        output_dir=str(tmp_path / "runs"),
    )


def test_a_crashed_trial_restarts_from_its_checkpoint(tmp_path):
    # two identical trials; the first to finish epoch 2 raises there, once
    space = parse_space({"params": {"train.learning_rate": {"type": "choice", "values": [0.01]}}})
    outcome = run_tune(
        _base(tmp_path, "train.epochs=4"),
        space,
        TuneOptions(num_samples=2, scheduler="none", max_failures=1, verbose=0),
        fault=InjectedFault(epoch=2, marker_dir=str(tmp_path / "marker")),
    )
    assert (tmp_path / "marker" / "injected-fault").is_file()
    faulted = [t for t in outcome.trials if t.failures == 1]
    clean = [t for t in outcome.trials if t.failures == 0]
    assert len(faulted) == 1 and len(clean) == 1
    faulted, clean = faulted[0], clean[0]
    assert (faulted.restores, clean.restores) == (1, 0)
    assert faulted.status == clean.status == "TERMINATED"
    assert faulted.stop_reason == clean.stop_reason == "completed"
    assert faulted.epochs == clean.epochs == 4
    # restored from the epoch-1 checkpoint: epoch 1 was not trained again
    results = _trial_results(outcome.experiment_dir)
    assert [row["epoch"] for row in results[faulted.trial_id]] == [1, 2, 3, 4]
    assert [row["restores"] for row in results[faulted.trial_id]] == [0, 1, 1, 1]
    # and the resumed training is exactly the uninterrupted one
    values = {t: [row["valid/ndcg_at_10"] for row in rows] for t, rows in results.items()}
    assert values[faulted.trial_id] == values[clean.trial_id]
    assert faulted.best_value == clean.best_value


class InterruptAfter(Callback):
    """Send this process SIGUSR1 (Ray Tune's stop signal, like Ctrl-C) after ``n`` results.

    Ray pickles callbacks with the experiment and restores them on resume; the marker file
    keeps the restored copy from interrupting again.
    """

    def __init__(self, n: int, marker: Path) -> None:
        self.n = n
        self.marker = str(marker)
        self.seen = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen += 1
        if self.seen == self.n and not os.path.exists(self.marker):
            Path(self.marker).write_text("interrupted\n")
            os.kill(os.getpid(), signal.SIGUSR1)


def test_an_interrupted_experiment_resumes(tmp_path):
    cfg = _base(tmp_path, "train.epochs=6", "tracking.enabled=true")
    space = parse_space(
        {"params": {"train.learning_rate": {"type": "grid", "values": [0.01, 0.02]}}}
    )
    first = run_tune(
        cfg,
        space,
        TuneOptions(num_samples=1, scheduler="none", max_concurrent=1, verbose=0),
        extra_callbacks=[InterruptAfter(3, tmp_path / "interrupted")],
    )
    assert first.interrupted and first.best is None
    assert any(t.status != "TERMINATED" for t in first.trials)
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').as_posix()}")
    assert client.get_run(first.parent_run_id).info.status == "KILLED"
    assert not (first.experiment_dir / "best_config.yaml").exists()

    code, stdout = run_tune_cli("--resume", str(first.experiment_dir), "--quiet")
    assert code == 0, stdout
    summary = json.loads((first.experiment_dir / "summary.json").read_text())
    assert not summary["interrupted"]
    trials = pd.read_csv(first.experiment_dir / "trials.csv")
    assert list(trials["status"]) == ["TERMINATED", "TERMINATED"]
    assert list(trials["epochs"]) == [6, 6]
    assert trials["restores"].max() == 1  # the interrupted trial continued from a checkpoint
    results = _trial_results(first.experiment_dir)
    for rows in results.values():
        assert sorted({row["epoch"] for row in rows}) == [1, 2, 3, 4, 5, 6]
    # the same MLflow parent, finished now, with one child per trial
    parent = client.get_run(first.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert summary["tracking"]["parent_run_id"] == first.parent_run_id
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{first.parent_run_id}'"
    )
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        steps = {m.step for m in client.get_metric_history(child.info.run_id, "valid/ndcg_at_10")}
        assert steps == set(range(6))  # 0-based, as recsys train logs
    assert (first.experiment_dir / "best_config.yaml").is_file()


def test_points_run_first_in_their_order(tmp_path):
    space = parse_space(
        {
            "params": {
                "train.learning_rate": {"type": "loguniform", "low": 1e-3, "high": 5e-2},
                "model.embedding_size": {"type": "pow2", "low": 8, "high": 32},
            },
            "points": [
                {"train.learning_rate": 0.02, "model.embedding_size": 8},
                {"train.learning_rate": 0.003, "model.embedding_size": 32},
            ],
        }
    )
    outcome = run_tune(
        _base(tmp_path, "train.epochs=1"),
        space,
        TuneOptions(num_samples=3, scheduler="none", max_concurrent=1, verbose=0),
    )
    by_id = sorted(outcome.trials, key=lambda t: t.trial_id)
    assert [t.params for t in by_id[:2]] == space.points
    assert by_id[2].params not in space.points


def test_a_closed_form_model_is_one_step_per_trial(tmp_path):
    cfg = build_run_config(
        None,
        [],
        model={"name": "itemknn"},
        data={"name": DATA},
        tracking={"enabled": False},
        output_dir=str(tmp_path / "runs"),
    )
    space = parse_space({"params": {"model.k": {"type": "grid", "values": [5, 20]}}})
    outcome = run_tune(cfg, space, TuneOptions(num_samples=1, scheduler="asha", verbose=0))
    assert [(t.epochs, t.stop_reason) for t in outcome.trials] == [(1, "completed")] * 2
    assert outcome.best is not None and outcome.test


def test_optuna_samples_every_distribution_type_under_asha(tmp_path):
    # optuna is in the test extra, so CI runs this; skipped only where it is not installed
    pytest.importorskip("optuna")
    space = tmp_path / "space.yaml"
    space.write_text(
        "fixed:\n  train.epochs: 4\n  train.patience: 4\n"
        "params:\n"
        "  train.learning_rate: {type: loguniform, low: 1.0e-3, high: 5.0e-2}\n"
        "  model.reg_weight: {type: uniform, low: 0.0, high: 1.0e-3}\n"
        "  model.embedding_size: {type: pow2, low: 8, high: 32}\n"
        "  train.batch_size: {type: int, low: 128, high: 512}\n"
        "  train.n_negatives: {type: choice, values: [1, 2]}\n"
    )
    code, stdout = run_tune_cli(
        "--model", "bpr", "--dataset", DATA, "--space", str(space), "--num-samples", "3",
        "-o", str(tmp_path / "runs"), "--name", "optuna", "--no-tracking", "--quiet",
        "--search-alg", "optuna", "--scheduler", "asha", "--grace-period", "1", "--seed", "3",
    )  # fmt: skip
    assert code == 0, stdout
    trials = pd.read_csv(tmp_path / "runs" / "optuna" / "trials.csv")
    assert len(trials) == 3
    rates = trials["train.learning_rate"]
    assert rates.nunique() == 3 and rates.between(1e-3, 5e-2).all()
    assert trials["model.reg_weight"].between(0.0, 1e-3).all()
    assert set(trials["model.embedding_size"]) <= {8, 16, 32}
    assert trials["train.batch_size"].between(128, 512).all()
    assert (trials["train.batch_size"] == trials["train.batch_size"].round()).all()
    assert set(trials["train.n_negatives"]) <= {1, 2}
    # the searcher state Ray saved holds an Optuna study: Optuna chose the points
    states = (tmp_path / "runs" / "optuna" / "ray").glob("searcher-state-*.pkl")
    assert any(b"optuna.study" in path.read_bytes() for path in states)
    summary = json.loads((tmp_path / "runs" / "optuna" / "summary.json").read_text())
    assert math.isfinite(summary["best"]["best_valid_ndcg_at_10"])
    best = yaml.safe_load((tmp_path / "runs" / "optuna" / "best_config.yaml").read_text())
    assert best["model"]["embedding_size"] in {8, 16, 32}


def test_a_trial_that_needs_more_gpus_than_ray_has_fails_early(tmp_path, capsys):
    code, _ = run_tune_cli(
        "--model", "bpr", "--dataset", DATA, "-o", str(tmp_path), "--no-tracking",
        "--quiet", "--gpus-per-trial", "1", "--set", "train.epochs=2",
    )  # fmt: skip
    assert code == 2
    assert "--gpus-per-trial 1 (the cluster has 0 GPUs)" in capsys.readouterr().err


def test_resume_a_folder_without_ray_state_is_an_error(tmp_path, capsys):
    (tmp_path / "tune.json").write_text("{}")
    assert main(["tune", "--resume", str(tmp_path)]) == 2
    assert "no Ray Tune state to resume" in capsys.readouterr().err


def test_a_search_where_every_trial_diverges_has_no_best(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  train.learning_rate: {type: choice, values: [1.0e+30, 1.0e+35]}\n")
    code, stdout = run_tune_cli(
        "--model", "bpr", "--dataset", DATA, "--space", str(space), "--num-samples", "2",
        "-o", str(tmp_path / "runs"), "--name", "diverging", "--no-tracking", "--quiet",
        "--scheduler", "none", "--set", "train.epochs=2", *FAST,
    )  # fmt: skip
    assert code == 2, stdout
    assert "every trial diverged" in capsys.readouterr().err
    folder = tmp_path / "runs" / "diverging"
    trials = pd.read_csv(folder / "trials.csv")
    assert list(trials["stop_reason"]) == ["diverged", "diverged"]
    # a diverged epoch's placeholder value is no validation result: no best configuration
    assert trials["best_ndcg_at_10"].isin([-math.inf]).all()
    assert json.loads((folder / "summary.json").read_text())["best"] is None
    assert not (folder / "best_config.yaml").exists()
