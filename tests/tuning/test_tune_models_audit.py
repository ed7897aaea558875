"""`recsys tune` with model, split and space combinations found wanting in an audit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from recsys.config import RunConfig, validate
from recsys.tuning import driver
from recsys.tuning.space import parse_space
from tests.tuning.conftest import run_tune_cli

SMALL = "synthetic-120x80x2400"
DNIS_SPACE = Path(__file__).resolve().parents[2] / "tune" / "spaces" / "dnis.yaml"
"""One training batch per epoch at the default batch size: a huge learning rate validates
once, then diverges in the second epoch."""


def test_a_nested_model_key_can_be_sampled():
    # DNIS (and the denoising wrappers) take their base model's settings in base_params
    base = validate(RunConfig, {"model": {"name": "dnis"}}).model_dump(mode="json")
    space = parse_space(
        {"params": {"model.base_params.embedding_size": {"type": "choice", "values": [8, 16]}}},
        base,
    )
    assert list(space.params) == ["model.base_params.embedding_size"]


def test_a_bad_nested_model_value_is_still_refused():
    from recsys.errors import ConfigError

    base = validate(RunConfig, {"model": {"name": "dnis"}}).model_dump(mode="json")
    with pytest.raises(ConfigError, match="model.base_params.embedding_size, value 0"):
        parse_space(
            {"params": {"model.base_params.embedding_size": {"type": "choice", "values": [0]}}},
            base,
        )
    with pytest.raises(ConfigError, match="has no hyper-parameter 'nosuch'"):
        parse_space({"params": {"model.nosuch.x": {"type": "choice", "values": [1]}}}, base)


def test_heldout_users_with_a_model_that_cannot_fold_in_fails_before_ray(
    tmp_path, monkeypatch, capsys
):
    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(driver, "ray_session", no_ray)
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  train.learning_rate: {type: choice, values: [1.0e-3, 1.0e-2]}\n")
    code, _ = run_tune_cli(
        "--model", "bpr", "--dataset", SMALL, "--space", str(space), "--num-samples", "2",
        "-o", str(tmp_path / "runs"), "--no-tracking", "--quiet",
        "--set", "split.strategy=heldout_users", "--set", "train.epochs=2",
    )  # fmt: skip
    assert code == 2
    assert "cannot score the held-out users" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("scheduler", [["--scheduler", "asha"], ["--scheduler", "median"]])
def test_a_scheduler_that_could_stop_dnis_before_it_prunes_is_refused_before_ray(
    tmp_path, monkeypatch, capsys, scheduler
):
    # warm start 2 + search 2 + one fine-tuning epoch: a grace period of 3 would judge and
    # stop trials by warm-start or search epochs, which the saved model never is
    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(driver, "ray_session", no_ray)
    code, _ = run_tune_cli(
        "--model", "dnis", "--dataset", SMALL, "--space", str(DNIS_SPACE),
        "--num-samples", "2", "-o", str(tmp_path / "runs"), "--no-tracking", "--quiet",
        *scheduler, "--grace-period", "3", "--set", "train.epochs=8",
        "--set", "model.warm_start_epochs=2", "--set", "model.search_epochs=2",
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "reaches its saved form after 5 epochs" in err and "--scheduler none" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _search(tmp_path, learning_rates: str, name: str, num_samples: str) -> tuple[int, str, Path]:
    """A two-epoch BPR search over ``learning_rates`` (a space distribution, inline YAML)."""
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  train.learning_rate: {learning_rates}\n")
    code, stdout = run_tune_cli(
        "--model", "bpr", "--dataset", SMALL, "--space", str(space), "--num-samples", num_samples,
        "-o", str(tmp_path / "runs"), "--name", name, "--no-tracking", "--quiet",
        "--scheduler", "none", "--set", "train.epochs=2",
    )  # fmt: skip
    return code, stdout, tmp_path / "runs" / name


def test_every_trial_diverging_after_a_validation_has_no_best(local_ray, tmp_path, capsys):
    code, stdout, folder = _search(
        tmp_path, "{type: choice, values: [1.0e+30, 1.0e+35]}", "diverging", "2"
    )
    assert code == 2, stdout
    assert "every trial diverged" in capsys.readouterr().err
    trials = pd.read_csv(folder / "trials.csv")
    assert list(trials["stop_reason"]) == ["diverged", "diverged"]
    # each validated its first epoch, then diverged: still no configuration to recommend
    assert (trials["epochs"] == 2).all()
    assert json.loads((folder / "summary.json").read_text())["best"] is None
    assert not (folder / "best_config.yaml").exists()
    # a diverged trial's last report still says where it trained
    assert list(trials["device"]) == ["cpu", "cpu"]


def test_a_diverged_trial_is_never_the_best(local_ray, tmp_path):
    """Even one that validated before it diverged: its best_config.yaml would diverge again."""
    grid = "{type: grid, values: [1.0e-6, 1.0e+35]}"
    code, stdout, folder = _search(tmp_path, grid, "mixed", "1")
    assert code == 0, stdout
    trials = pd.read_csv(folder / "trials.csv")
    assert sorted(trials["stop_reason"]) == ["completed", "diverged"]
    best = json.loads((folder / "summary.json").read_text())["best"]
    assert best["params"]["train.learning_rate"] == 1e-6
