"""`recsys probe` across models: run states, devices, checkpoints and --compare (audit)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from recsys.cli import main

DATA = "synthetic-60x40x600"
TRAIN = ["--set", "train.epochs=2", "--set", "train.num_threads=1", "--quiet", "--no-tracking"]
PROBE = ["--epochs", "1", "--no-tracking", "--quiet", "--no-baselines", "-k", "4"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """BPR-MF, DNIS around it and Pop, trained for two epochs on tiny synthetic data."""
    out = tmp_path_factory.mktemp("audit-runs")
    for model in ("bpr", "dnis", "pop"):
        args = ["train", "--model", model, "--dataset", DATA, "-o", str(out)]
        # DNIS's schedule in two epochs: a search epoch, then one fine-tuning epoch
        schedule = ["--set", "model.warm_start_epochs=0", "--set", "model.search_epochs=1"]
        extra = schedule if model == "dnis" else []
        assert main([*args, *TRAIN, *extra, "--set", f"run_name={model}"]) == 0
    return {model: out / model for model in ("bpr", "dnis", "pop")}


def _copy(run: Path, dest: Path, status: str | None = None) -> Path:
    """A copy of ``run``; with ``status`` it ended that way before it was tested."""
    shutil.copytree(run, dest)
    if status is not None:
        (dest / "metrics.json").unlink()
        record = {"tracking_run_id": None, "tracking_uri": None, "status": status}
        if status == "failed":
            record["error"] = "FloatingPointError: the loss is NaN in epoch 2"
        (dest / "run.json").write_text(json.dumps(record))
    return dest


def test_a_failed_run_is_refused_and_an_interrupted_one_warned_about(
    runs, tmp_path, capsys, caplog
):
    failed = _copy(runs["bpr"], tmp_path / "failed", "failed")
    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["probe", str(failed), *PROBE, "-o", str(out)]) == 2
    # before: the best checkpoint of the failed run was probed without a word (exit 0), where
    # `recsys evaluate` refuses the run
    err = capsys.readouterr().err
    assert "the run failed before it was tested" in err and "NaN in epoch 2" in err
    assert not out.exists()
    # the same as the compared run
    args = ["probe", str(runs["bpr"]), "--compare", str(failed), *PROBE, "-o", str(out)]
    assert main(args) == 2
    assert "the run failed before it was tested" in capsys.readouterr().err

    interrupted = _copy(runs["bpr"], tmp_path / "interrupted", "interrupted")
    with caplog.at_level(logging.WARNING):
        assert main(["probe", str(interrupted), *PROBE, "-o", str(out)]) == 0
    assert any("was interrupted" in r.getMessage() for r in caplog.records)
    assert (out / "report.json").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_run_trained_on_a_gpu_is_probed_on_the_cpu(runs, tmp_path):
    run = _copy(runs["bpr"], tmp_path / "gpu")
    config = run / "config.yaml"
    assert "device: cpu" in config.read_text()
    config.write_text(config.read_text().replace("device: cpu", "device: cuda"))
    out = tmp_path / "report"
    # before: "train.device='cuda' but CUDA is not available" (exit 2), though the probe runs
    # on the CPU; on a GPU machine the model stayed there and scored CPU representations
    assert main(["probe", str(run), *PROBE, "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["setup"]["scoring_site"] and report["quality"]["valid_retention"] is not None


def test_the_last_checkpoint_of_a_dnis_run(runs, tmp_path):
    out = tmp_path / "report"
    last = runs["dnis"] / "checkpoints" / "last.pt"
    # before: best.pt switched the model to its compact tables, which last.pt (the search
    # state) did not fit: "does not fit the DNIS model its run config builds" (exit 2)
    assert main(["probe", str(last), *PROBE, "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["setup"]["checkpoint"] == str(last)
    assert report["quality"]["fvu"] is not None


def test_compare_with_a_model_without_the_site_is_refused_before_training(runs, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "report"
    args = ["probe", str(runs["bpr"]), "--compare", str(runs["pop"]), *PROBE, "-o", str(out)]
    # before: the SAE trained and the report came out without the comparison (a note in it)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{runs['pop']} (pop) has no site 'user' to compare with" in err
    assert "item_popularity" in err
    assert not out.exists()
