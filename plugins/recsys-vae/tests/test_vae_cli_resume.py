"""End to end: `recsys train` with the plugin's models, MLflow diagnostics, report, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from recsys_vae import MultVAE

from recsys import experiment
from recsys.cli import main
from recsys.tracking import NullTracker
from recsys.train.checkpoint import load_checkpoint
from recsys.train.trainer import TrainConfig, Trainer

DATA = "synthetic-300x200x3000"


def _train(tmp_path: Path, *args: str) -> int:
    return main(["train", "--dataset", DATA, "-o", str(tmp_path / "runs"), "--quiet", *args])


def _run_dir(tmp_path: Path) -> Path:
    return next((tmp_path / "runs").glob("*/metrics.json")).parent


class RecordingTracker(NullTracker):
    """Keeps what a run logs, in memory (the MLflow store itself is tested in the core)."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[dict[str, float], int | None]] = []
        self.artifacts: list[Path] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((dict(metrics), step))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.artifacts.append(Path(path))


MULTVAE_ARGS = (
    "--model",
    "multvae",
    "--set",
    "train.epochs=3",
    "--set",
    "model.latent_dim=16",
    "--set",
    "model.total_anneal_steps=4",
)


def test_cli_multvae_logs_collapse_diagnostics_and_writes_the_report(tmp_path, monkeypatch):
    tracker = RecordingTracker()
    monkeypatch.setattr(experiment, "make_tracker", lambda *args, **kwargs: tracker)
    assert _train(tmp_path, *MULTVAE_ARGS) == 0
    run = _run_dir(tmp_path)
    history = json.loads((run / "history.json").read_text())
    assert {"beta", "kl_total", "active_units", "collapsed_fraction"} <= set(history[0])
    per_epoch = [m for m, step in tracker.metrics if "train/active_units" in m]
    assert len(per_epoch) == 3
    betas = [m["train/beta"] for m in per_epoch]
    assert betas == sorted(betas) and betas[-1] == pytest.approx(0.2)
    assert {"collapse_report.html", "collapse.png", "collapse.json"} <= {
        p.name for p in tracker.artifacts
    }
    page = (run / "collapse_report.html").read_text()
    assert "data:image/png;base64," in page and "active_units" in page
    assert (run / "collapse.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((run / "collapse.json").read_text())
    assert len(report["final"]["kl_per_dim"]) == 16 and len(report["epochs"]) == 3


@pytest.mark.slow
def test_cli_multvae_diagnostics_reach_a_real_mlflow_store(tmp_path):
    import mlflow

    assert _train(tmp_path, *MULTVAE_ARGS) == 0
    run = _run_dir(tmp_path)
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")
    run_id = json.loads((run / "run.json").read_text())["tracking_run_id"]
    assert len(client.get_metric_history(run_id, "train/active_units")) == 3
    assert len(client.get_metric_history(run_id, "train/kl_total")) == 3
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"collapse_report.html", "collapse.png", "collapse.json"} <= artifacts


def test_cli_ardvae_reports_relevant_dimensions_in_the_log(tmp_path):
    code = _train(
        tmp_path,
        "--model",
        "ardvae",
        "--no-tracking",
        "--set",
        "train.epochs=2",
        "--set",
        "model.latent_dim=12",
    )
    assert code == 0
    run = _run_dir(tmp_path)
    assert "relevant latent dimensions of 12" in (run / "train.log").read_text()
    assert "relevant_dims" in json.loads((run / "collapse.json").read_text())


def test_cli_ease_under_the_heldout_users_split(tmp_path, capsys):
    code = _train(
        tmp_path,
        "--model",
        "ease",
        "--no-tracking",
        "--set",
        "split.strategy=heldout_users",
        "--set",
        "split.heldout_users=[30,30]",
        "--set",
        "eval.metrics=[recall,recall_min,ndcg]",
    )
    assert code == 0
    run = _run_dir(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["n_users"] <= 30 and metrics["test"]["recall_min_at_10"] > 0
    # the run folder's split keeps the fold-in part: re-evaluation gives the same numbers
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test"]["ndcg_at_10"] == pytest.approx(metrics["test"]["ndcg_at_10"])


def test_cli_bpr_under_heldout_users_is_a_clear_error(tmp_path, capsys):
    # refused before the data are split or any run folder exists, and before an earlier model
    # of the same command trains (multvae first would otherwise train, then bpr fail)
    code = _train(
        tmp_path,
        *("--model", "multvae", "--model", "bpr", "--no-tracking"),
        *("--set", "split.strategy=heldout_users"),
    )
    assert code == 2
    assert "'bpr' does not fold in" in capsys.readouterr().err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def _vae_trainer(split, path, callbacks=()):
    model = MultVAE(latent_dim=8, hidden_dims=(16,), anneal_cap=1.0, total_anneal_steps=25)
    cfg = TrainConfig(epochs=4, batch_size=64, progress=False, patience=100, seed=3)
    return Trainer(model, split, cfg, checkpoint_dir=path, callbacks=list(callbacks))


def test_anneal_step_survives_checkpoint_and_resume(vae_split, tmp_path):
    straight = _vae_trainer(vae_split, tmp_path / "a").fit()

    def crash(report):
        if report.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _vae_trainer(vae_split, tmp_path / "b", [crash]).fit()
    interrupted = load_checkpoint(tmp_path / "b" / "last.pt")
    steps = -(-vae_split.train.shape[0] // 64)  # every user has a training row
    assert int(interrupted["model"]["anneal_step"]) == 2 * steps
    resumed = _vae_trainer(vae_split, tmp_path / "b").fit(resume=True)
    assert [h["beta"] for h in resumed.history] == [h["beta"] for h in straight.history]
    assert [h["loss"] for h in resumed.history] == pytest.approx(
        [h["loss"] for h in straight.history]
    )
    final_a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    final_b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert int(final_b["anneal_step"]) == int(final_a["anneal_step"]) == 4 * steps
    assert torch.allclose(final_a["decoder.0.weight"], final_b["decoder.0.weight"])
