"""`recsys probe` on run folders: a warning when the SAE is no better than the mean, --compare
refusing other data, user errors before the MLflow run, --experiment, sae.pt in MLflow, and
one summary line for a failing labeller."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pytest

from recsys.cli import main
from recsys.probe.labeller import load_labeller
from recsys.probe.pipeline import ProbeConfig, run_probe, sae_warnings

TINY = "synthetic-60x40x600"
QUICK = ["--no-itda", "--no-baselines", "-k", "2", "--epochs", "2", "--quiet"]
COMPARE = [a for a in QUICK if a != "--no-itda"]  # --compare needs ITDA


def _train(out: Path, name: str, dataset: str = TINY, *extra: str) -> Path:
    args = ["train", "--model", "bpr", "--dataset", dataset, "-o", str(out), "--quiet"]
    args += ["--set", f"run_name={name}", "--set", "train.epochs=3", "--set", "train.num_threads=1"]
    assert main([*args, *extra]) == 0
    return out / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """BPR-MF on one tiny synthetic dataset (tracked in ``<out>/mlflow.db``), and untracked
    runs on the same data with another split, on the same sizes with another data seed, and
    on another dataset with the same users."""
    out = tmp_path_factory.mktemp("probe-runs")
    store = f"sqlite:///{(out / 'mlflow.db').as_posix()}"
    untracked = "--no-tracking"
    return {
        "base": _train(out, "base", TINY, "--tracking-uri", store),
        "resplit": _train(out, "resplit", TINY, untracked, "--set", "split.seed=7"),
        "seed1": _train(out, "seed1", TINY, untracked, "--set", "data.seed=1"),
        "bigger": _train(out, "bigger", "synthetic-60x50x700", untracked),
    }


def _store(runs: dict[str, Path]) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs['base'].parent / 'mlflow.db'}")


def _all_runs(client: mlflow.MlflowClient) -> list:
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


# -- defect 1 (and 8): the analysis rests on an SAE worse than the mean, silently ---------------


def test_an_sae_worse_than_the_mean_is_a_warning_in_the_report_and_summary(
    runs, tmp_path, capsys, caplog
):
    # one epoch at a tiny learning rate leaves the data-initialised SAE, whose first
    # reconstruction is about k times too large (FVU far above 1)
    out = tmp_path / "report"
    args = ["probe", str(runs["base"]), "--no-tracking", "-o", str(out), "--no-itda"]
    assert main([*args, "--epochs", "1", "--lr", "1e-7", "--quiet"]) == 0
    stdout = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["quality"]["fvu"] >= 1
    (warning,) = report["warnings"]
    assert "worse than predicting the mean" in warning and "not trustworthy" in warning
    assert "--set train.patience=N" in warning and "--lr, now 1e-07" in warning
    assert "--epochs, now 1" in warning
    # first in the notes of report.json and of the page, and at the top of its quality section
    assert report["notes"][0] == f"Warning: {warning}"
    page = (out / "report.html").read_text()
    quality = page[page.index('<section id="quality">') :]
    assert quality.index("not trustworthy") < quality.index("FVU (trained SAE)")
    assert page.count("worse than predicting the mean") == 2
    # the terminal summary and the log say it too
    assert any(
        line.startswith("warning ") and "not trustworthy" in line for line in stdout.splitlines()
    )
    assert any(
        "not trustworthy" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )


def test_epochs_0_says_the_sae_is_untrained(runs, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["probe", str(runs["base"]), "--no-tracking", "-o", str(out), *QUICK, "--json"]
    assert main([*args, "--epochs", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    report = json.loads((out / "report.json").read_text())
    assert report["warnings"] == summary["warnings"]
    assert "train.epochs=0 (--epochs 0): the SAE was not trained" in report["warnings"][0]
    assert "train it (--epochs)" in report["warnings"][1]


def test_an_sae_worse_than_the_untrained_baseline_is_a_warning():
    quality = {
        "fvu": 0.6,
        "fvu_untrained": 0.4,
        "best_epoch": 3,
        "epochs_run": 13,
        "stopped_early": True,
    }
    (warning,) = sae_warnings(quality, ProbeConfig())
    assert "worse than the untrained baseline SAE (FVU 0.4)" in warning
    assert "predicting the mean" not in warning
    assert "early stopping ended training after 13 epochs" in warning
    assert sae_warnings({**quality, "fvu": 0.3}, ProbeConfig()) == []


def test_a_sound_probe_has_no_warning(concept_probe):
    assert concept_probe.quality["fvu"] < min(1.0, concept_probe.quality["fvu_untrained"])
    assert concept_probe.warnings == []
    assert not any(n.startswith("Warning") for n in concept_probe.notes)


# -- defect 2: --compare on a run trained on other data with the same user ids ------------------


@pytest.mark.parametrize(
    ("other", "difference"),
    [
        ("seed1", "data.seed=1 vs 0"),
        ("bigger", "data.name='synthetic-60x50x700' vs 'synthetic-60x40x600'"),
    ],
)
def test_compare_refuses_a_run_on_other_data_with_the_same_user_ids(
    runs, tmp_path, capsys, other, difference
):
    out = tmp_path / "report"
    args = ["probe", str(runs["base"]), "--compare", str(runs[other]), "-o", str(out)]
    assert main([*args, "--no-tracking", *COMPARE]) == 2
    err = capsys.readouterr().err
    # before: accepted, with a Jaccard similarity of unrelated users that share an index
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert f"{runs[other]} was trained on other data than {runs['base']}" in err
    assert difference in err
    assert not out.exists()


def test_compare_accepts_another_split_of_the_same_data(runs, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["probe", str(runs["base"]), "--compare", str(runs["resplit"]), "-o", str(out)]
    assert main([*args, "--no-tracking", *COMPARE, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert 0 <= summary["itda jaccard (compared model)"] <= 1


# -- defect 3: user errors found with the model leave no FAILED MLflow run --------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "nosuch"], "unknown probe site 'nosuch'"),
        (["-k", "300"], "sae.k=300 exceeds the"),
        (["--set", "concepts.heldout_fraction=0.0001"], "concepts.heldout_fraction=0.0001"),
        (["--compare", "seed1"], "was trained on other data"),
    ],
)
def test_user_errors_are_raised_before_the_mlflow_run_is_created(
    runs, tmp_path, capsys, args, message
):
    client = _store(runs)
    before = {r.info.run_id for r in _all_runs(client)}
    args = [str(runs["seed1"]) if a == "seed1" else a for a in args]
    out = tmp_path / "report"
    assert main(["probe", str(runs["base"]), "-o", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error:"), err
    # before: a FAILED child run of the training run was left in the store for each
    assert {r.info.run_id for r in _all_runs(client)} == before
    assert not out.exists()


# -- defects 4 and 5: --experiment, and sae.pt among the artifacts ------------------------------


def test_experiment_puts_the_probe_in_that_experiment_tagged_with_the_training_run(runs, tmp_path):
    training_id = json.loads((runs["base"] / "run.json").read_text())["tracking_run_id"]
    out = tmp_path / "report"
    args = ["probe", str(runs["base"]), "--experiment", "probes-x", "-o", str(out), *QUICK]
    assert main(args) == 0
    client = _store(runs)
    # before: the probe went to the training run's experiment and probes-x was never made
    experiment = client.get_experiment_by_name("probes-x")
    assert experiment is not None
    (probe,) = client.search_runs([experiment.experiment_id])
    assert probe.info.status == "FINISHED" and probe.info.run_name == "probe-user"
    assert probe.data.tags["training_run_id"] == training_id
    assert "mlflow.parentRunId" not in probe.data.tags
    assert probe.data.tags["run_dir"] == str(runs["base"].resolve())
    report = json.loads((out / "report.json").read_text())
    assert report["setup"]["tracking_run_id"] == probe.info.run_id
    artifacts = {a.path for a in client.list_artifacts(probe.info.run_id, "probe")}
    assert artifacts == {"probe/report.html", "probe/report.json", "probe/sae.pt"}


def test_the_training_runs_own_experiment_keeps_the_probe_a_child(runs, tmp_path):
    training_id = json.loads((runs["base"] / "run.json").read_text())["tracking_run_id"]
    client = _store(runs)
    parent = client.get_run(training_id)
    name = client.get_experiment(parent.info.experiment_id).name
    out = tmp_path / "report"
    args = ["probe", str(runs["base"]), "--experiment", name, "-o", str(out), *QUICK]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    probe = client.get_run(report["setup"]["tracking_run_id"])
    assert probe.data.tags["mlflow.parentRunId"] == training_id
    assert probe.info.experiment_id == parent.info.experiment_id
    assert "training_run_id" not in probe.data.tags
    # the exported SAE is logged with the report (the help and the README say so)
    artifacts = {a.path for a in client.list_artifacts(probe.info.run_id, "probe")}
    assert "probe/sae.pt" in artifacts


# -- nits ------------------------------------------------------------------------------------


def test_a_labeller_failing_on_every_card_is_one_warning(concept_data, concept_lightgcn, caplog):
    ds, split = concept_data
    values = {"train": {"epochs": 3, "progress": False}, "itda": {"enabled": False}}
    config = ProbeConfig.model_validate({**values, "baselines": False, "cards": 4})
    labeller = load_labeller("tests.probe.fake_labeller:fails")
    result = run_probe(concept_lightgcn, ds, split, config, labeller=labeller)
    assert len(result.cards) == 4 and all(c["description"] is None for c in result.cards)
    failures = [r.getMessage() for r in caplog.records if "labeller failed" in r.getMessage()]
    # before: one identical warning per card
    assert len(failures) == 1, failures
    assert "on 4 of 4 latents" in failures[0]
    assert f"service unavailable (latent {result.cards[0]['latent']})" in failures[0]
