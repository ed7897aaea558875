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
    # best first: the diverged trial comes after the scored one, whatever it validated
    assert list(trials["stop_reason"]) == ["completed", "diverged"]
    best = json.loads((folder / "summary.json").read_text())["best"]
    assert best["params"]["train.learning_rate"] == 1e-6
    starred = [line for line in stdout.splitlines() if line.startswith("*")]
    assert len(starred) == 1 and best["trial_id"] in starred[0]


def _dnis_space(tmp_path, warm_starts: list[int], extra: str = "") -> Path:
    """A DNIS space that samples the warm start (the search is fixed at one epoch)."""
    space = tmp_path / "dnis_warm.yaml"
    space.write_text(
        "fixed:\n  train.valid_metric: recall_at_20\n  model.base_params.embedding_size: 8\n"
        f"  model.search_epochs: 1\nparams:\n  model.warm_start_epochs: "
        f"{{type: choice, values: {warm_starts}}}\n{extra}"
    )
    return space


def _dnis_tune(tmp_path, space: Path, *args: str) -> int:
    code, _ = run_tune_cli(
        "--model", "dnis", "--dataset", SMALL, "--space", str(space), "--num-samples", "2",
        "-o", str(tmp_path / "runs"), "--no-tracking", "--quiet", *args,
    )  # fmt: skip
    return code


@pytest.fixture
def ray_reached(monkeypatch):
    """Stop run_tune where Ray would start: a ConfigError saying so."""
    from recsys.errors import ConfigError

    def session(address, quiet):
        raise ConfigError("Ray would start here")

    monkeypatch.setattr(driver, "ray_session", session)


def test_a_sampled_key_is_not_judged_by_its_base_value(tmp_path, ray_reached, capsys):
    # the base config's warm start (20) needs 32 epochs, but every trial samples 1 or 2 (3 and
    # 4 epochs): the search was refused for a value no trial uses
    space = _dnis_space(tmp_path, [1, 2])
    code = _dnis_tune(tmp_path, space, "--scheduler", "none", "--set", "train.epochs=4")
    assert code == 2
    assert "Ray would start here" in capsys.readouterr().err


def test_a_sampled_value_the_model_refuses_fails_before_ray(tmp_path, ray_reached, capsys):
    # it used to start Ray: the trial with warm start 25 failed there, was retried, ended as
    # an error and the command exited 0
    space = _dnis_space(
        tmp_path, [1, 25], extra="  model.keep_ratio: {type: grid, values: [0.5, 0.25]}\n"
    )
    code = _dnis_tune(tmp_path, space, "--scheduler", "none", "--set", "train.epochs=22")
    assert code == 2
    err = capsys.readouterr().err
    assert (
        f"{space}: trials that sample model.warm_start_epochs=25 would fail before training: "
        "train.epochs=22 is too few for the DNIS schedule" in err
    )
    assert "keep_ratio" not in err.split("would fail")[0]  # only the value that matters
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_grace_period_covers_the_longest_sampled_schedule(tmp_path, ray_reached, capsys):
    # warm start 1 or 4, search 1, one fine-tuning epoch: 3 or 6 epochs before pruning; the
    # base config's 20 + 10 + 1 no longer counts, the sampled 6 does
    space = _dnis_space(tmp_path, [1, 4])
    code = _dnis_tune(tmp_path, space, "--grace-period", "4", "--set", "train.epochs=10")
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "could stop trials before model 'dnis' reaches its saved form after 6 epochs (trials "
        "that sample model.warm_start_epochs=4); use --scheduler none, or --grace-period 6"
    ) in err
    code = _dnis_tune(tmp_path, space, "--grace-period", "6", "--set", "train.epochs=10")
    assert code == 2 and "Ray would start here" in capsys.readouterr().err


def _refusing_search(tmp_path, monkeypatch, warm_starts: list[int], name: str):
    """A 4-epoch DNIS search whose trials run ``warm_starts`` in order, with the check before
    Ray switched off: as for a value that check does not draw (inside a range, say)."""
    monkeypatch.setattr(driver, "_check_trials", lambda cfg, space: [])
    points = "".join(f"  - {{model.warm_start_epochs: {w}}}\n" for w in warm_starts)
    space = _dnis_space(tmp_path, sorted(set(warm_starts)), extra=f"points:\n{points}")
    code, stdout = run_tune_cli(
        "--model", "dnis", "--dataset", SMALL, "--space", str(space),
        "--num-samples", str(len(warm_starts)), "-o", str(tmp_path / "runs"), "--name", name,
        "--no-tracking", "--quiet", "--scheduler", "none", "--max-failures", "2",
        "--set", "train.epochs=4",
    )  # fmt: skip
    return code, stdout, tmp_path / "runs" / name


def test_a_trial_whose_config_is_refused_is_not_retried(local_ray, tmp_path, monkeypatch, capsys):
    code, stdout, folder = _refusing_search(tmp_path, monkeypatch, [1, 5], "some")
    assert code == 0, stdout
    trials = pd.read_csv(folder / "trials.csv")
    refused = trials[trials["stop_reason"] == "refused"]
    assert list(refused["model.warm_start_epochs"]) == [5]
    # a deterministic refusal: no retries (it was retried --max-failures times, then ERROR)
    assert list(refused["failures"]) == [0] and list(refused["epochs"]) == [0]
    assert "too few for the DNIS schedule" in refused["error"].iloc[0]
    assert trials["stop_reason"].iloc[0] == "completed"  # best first, the refused one last
    best = json.loads((folder / "summary.json").read_text())["best"]
    assert best["params"] == {"model.warm_start_epochs": 1}
    err = capsys.readouterr().err
    assert "1 of 2 trials refused their configuration" in err
    # only the best trial is starred
    starred = [line for line in stdout.splitlines() if line.startswith("*")]
    assert len(starred) == 1 and best["trial_id"] in starred[0]


def test_a_search_where_every_trial_is_refused_fails(local_ray, tmp_path, monkeypatch, capsys):
    code, stdout, folder = _refusing_search(tmp_path, monkeypatch, [5, 6], "all")
    assert code == 2, stdout
    assert "every trial refused its configuration, so there is no result" in (
        capsys.readouterr().err
    )
    trials = pd.read_csv(folder / "trials.csv")
    assert list(trials["stop_reason"]) == ["refused", "refused"]
    assert (trials["failures"] == 0).all()
    assert not any(line.startswith("*") for line in stdout.splitlines())
