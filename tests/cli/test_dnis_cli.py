"""`recsys dnis` end to end on synthetic data: one search, the report, reload, errors."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch

from recsys.cli import main
from recsys.experiment import load_run
from recsys.train.checkpoint import load_checkpoint

DATA = "synthetic-200x120x3000"
FAST = [
    "--set",
    "train.epochs=4",
    "--set",
    "train.batch_size=512",
    "--set",
    "train.learning_rate=0.01",
    "--set",
    "model.warm_start_epochs=1",
    "--set",
    "model.search_epochs=1",
    "--set",
    "model.n_blocks=4",
    "-p",
    "embedding_size=16",
    "--quiet",
]


def _dnis(tmp_path, *args: str) -> int:
    return main(["dnis", "--dataset", DATA, "-o", str(tmp_path / "runs"), *FAST, *args])


def test_a_search_saves_a_mixed_width_model_that_evaluates_the_same(tmp_path, capsys):
    assert _dnis(tmp_path, "--keep-ratio", "0.25", "--no-tracking") == 0
    out = capsys.readouterr().out
    assert "chosen dimension per frequency block" in out
    run = next((tmp_path / "runs").glob("dnis-*/config.yaml")).parent
    dims = json.loads((run / "dnis_dimensions.json").read_text())
    kept = dims["kept_parameters"]
    # a cell (one dimension of a block) costs 50 user or 30 item rows: within half a cell
    assert abs(kept - 1280) <= 25 and set(dims["blocks"]) == {"user", "item"}
    assert f"ID-embedding parameters: {kept:,} of 5,120 kept" in out
    best = load_checkpoint(run / "checkpoints" / "best.pt")["model"]
    stored = sum(v.numel() for k, v in best.items() if ".tables." in k)
    assert stored == kept
    assert not any(k.endswith("embedding.weight") for k in best)
    # reloaded through load_run / `recsys evaluate`: the metrics the run recorded
    _, _, _, model = load_run(run)
    assert model.is_compact() and model.kept_parameters() == kept
    metrics = json.loads((run / "metrics.json").read_text())
    assert main(["evaluate", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test"] == metrics["test"] and again["valid"] == metrics["valid"]
    # and the reloaded model scores exactly as the in-memory one at the end of training
    _, _, _, twin = load_run(run)
    users = torch.arange(20)
    assert torch.equal(model.score(users), twin.score(users))


def test_a_parameter_budget_and_json_output(tmp_path, capsys):
    assert _dnis(tmp_path, "--budget", "2000", "--no-tracking", "--json", "-b", "lightgcn") == 0
    summary = json.loads(capsys.readouterr().out)
    dims = summary["dimensions"]
    assert dims["base"] == "lightgcn" and abs(dims["kept_parameters"] - 2000) <= 40  # 80 rows
    assert set(dims["blocks"]) == {"node"}


@pytest.mark.slow  # trains four models and opens an MLflow store
def test_the_report_compares_dnis_with_uniform_widths_and_logs_to_mlflow(tmp_path, capsys):
    code = _dnis(tmp_path, "--report", "--ratios", "0.5,0.25", "--uniform", "4,8")
    assert code == 0
    out = capsys.readouterr().out
    assert "| dnis-0.5 |" in out and "| bpr-4 |" in out
    folder = next((tmp_path / "runs").glob("dnis-report-*"))
    for name in ("report.html", "report.md", "report.json", "frontier.png"):
        assert (folder / name).is_file(), name
    assert (folder / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((folder / "report.json").read_text())
    params = {p["label"]: p["parameters"] for p in report["points"]}
    assert params["bpr-4"] == 1280 and params["bpr-8"] == 2560
    assert abs(params["dnis-0.5"] - 2560) <= 25 and abs(params["dnis-0.25"] - 1280) <= 25
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "block 3" in html
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name("recsys")
    runs = client.search_runs([experiment.experiment_id])
    report_run = next(r for r in runs if r.data.tags.get("kind") == "dnis-report")
    assert report_run.data.metrics["dnis-0.5/parameters"] == params["dnis-0.5"]
    artifacts = {a.path for a in client.list_artifacts(report_run.info.run_id, "report")}
    assert {"report/report.html", "report/frontier.png"} <= artifacts
    # every model of the report is an MLflow run of its own too
    assert len(runs) == 5


def test_bad_options_are_clear_errors(tmp_path, capsys):
    assert _dnis(tmp_path, "--keep-ratio", "0.5", "--budget", "10", "--no-tracking") == 2
    assert "not both" in capsys.readouterr().err
    assert _dnis(tmp_path, "-b", "nosuch", "--no-tracking") == 2
    err = capsys.readouterr().err
    assert (
        "Invalid value for --base" in err
        and "unknown model 'nosuch'" in err
        and "model.name" not in err
    )
    assert _dnis(tmp_path, "-b", "pop", "--no-tracking") == 2
    assert "no trainable ID embeddings" in capsys.readouterr().err
    assert _dnis(tmp_path, "--report", "--ratios", "0.5,2", "--no-tracking") == 2
    assert "ratios must be in (0, 1]" in capsys.readouterr().err
    assert _dnis(tmp_path, "--budget", "99999999", "--no-tracking") == 2
    assert "exceeds" in capsys.readouterr().err
    # a report whose uniform models would fail is refused before DNIS trains
    assert _dnis(tmp_path, "--report", "--width-key", "bogus", "--no-tracking") == 2
    assert "has no hyper-parameter 'bogus'" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("*/checkpoints"))


def test_budgets_and_blocks_that_cannot_work_are_clear_errors(tmp_path, capsys):
    # 200 users + 120 items at width 16: one dimension per row costs 320 parameters
    assert _dnis(tmp_path, "--budget", "3", "--no-tracking") == 2
    err = capsys.readouterr().err
    assert "model.param_budget=3 is less than one dimension per row" in err and "320" in err
    assert _dnis(tmp_path, "--keep-ratio", "0.05", "--no-tracking") == 2
    assert "keep_ratio >= 0.0625" in capsys.readouterr().err
    assert _dnis(tmp_path, "--set", "model.n_blocks=500", "--no-tracking") == 2
    assert "model.n_blocks=500 exceeds the 200 rows of the user table" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("*/checkpoints"))


def test_keep_ratio_overrides_a_budget_from_the_config_file(tmp_path, capsys):
    config = tmp_path / "dnis.yaml"
    config.write_text("model:\n  name: dnis\n  param_budget: 4000\n")
    args = ["-c", str(config), "--keep-ratio", "0.25", "--no-tracking", "--json"]
    assert _dnis(tmp_path, *args) == 0
    dims = json.loads(capsys.readouterr().out)["dimensions"]
    assert dims["budget"] == 1280 and abs(dims["kept_parameters"] - 1280) <= 25


def test_the_report_checks_every_model_before_the_first_trains(tmp_path, capsys):
    assert _dnis(tmp_path, "--report", "--keep-ratio", "0.3", "--no-tracking") == 2
    assert "--report trains DNIS at each of --ratios" in capsys.readouterr().err
    assert _dnis(tmp_path, "--report", "--ratios", "0.5,0.5", "--no-tracking") == 2
    assert "listed twice" in capsys.readouterr().err
    # the second ratio is below one dimension per row: found before dnis-0.5 trains
    code = _dnis(tmp_path, "--report", "--ratios", "0.5,0.01", "--uniform", "4", "--no-tracking")
    assert code == 2
    assert "report model dnis-0.01: model.keep_ratio=0.01" in capsys.readouterr().err
    # the two-tower's embedding_size is its output width; its ID tables are feature_dim wide
    code = _dnis(
        tmp_path, "--report", "-b", "twotower", "--ratios", "0.5", "--uniform", "4", "--no-tracking"
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "report model twotower-4: embedding_size=4 does not set the width" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_report_cut_short_keeps_the_models_already_trained(tmp_path, capsys, monkeypatch):
    import recsys.dnis.report as report
    from recsys.errors import TrackingError

    trained = []

    def train_then_fail(cfg):
        if trained:  # the tracker goes away during the second model
            raise TrackingError("the MLflow server went away")
        trained.append(cfg.run_name)
        return real(cfg)

    real = report.train_run
    monkeypatch.setattr(report, "train_run", train_then_fail)
    code = _dnis(tmp_path, "--report", "--ratios", "0.5", "--uniform", "4", "--no-tracking")
    assert code == 2 and "went away" in capsys.readouterr().err
    (folder,) = (tmp_path / "runs").glob("dnis-report-*")
    points = json.loads((folder / "report.json").read_text())["points"]
    assert [p["label"] for p in points] == ["dnis-0.5"]
    assert "| dnis-0.5 |" in (folder / "report.md").read_text()
