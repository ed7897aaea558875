"""`recsys tune --resume` on an experiment that finished, and with options that repeat its own.

One small experiment (2 trials of 2 epochs, no tracking) runs once for the module; every test
reads or resumes it. A finished experiment has nothing to resume: a message, exit 0, no Ray
and no file rewritten. An option equal to the experiment's own setting is accepted; one that
would change it is refused with what the experiment has instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recsys.errors import ConfigError
from tests.tuning.conftest import run_tune_cli

DATA = "synthetic-120x80x2400"


@pytest.fixture(scope="module")
def experiment(local_ray, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tune-finished")
    code, stdout = run_tune_cli(
        "--model", "bpr", "--dataset", DATA, "--num-samples", "2", "--scheduler", "none",
        "-o", str(root), "--name", "done", "--no-tracking", "--quiet",
        "--set", "train.epochs=2", "--set", "train.batch_size=256",
    )  # fmt: skip
    assert code == 0, stdout
    folder = root / "done"
    assert json.loads((folder / "tune.json").read_text())["tracking"] is None
    assert json.loads((folder / "summary.json").read_text())["interrupted"] is False
    return folder


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if the driver starts (or joins) Ray."""

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started for an experiment with nothing to resume")

    monkeypatch.setattr("recsys.tuning.driver.ray_session", refuse)


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """The experiment's own files (not Ray's folder): bytes and modification time."""
    return {
        path.name: (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.iterdir())
        if path.is_file()
    }


@pytest.mark.parametrize(
    "repeated",
    [
        [],
        ["--no-tracking"],
        ["--no-tracking", "--set", "train.epochs=2", "--num-samples", "2", "--scheduler", "none"],
    ],
    ids=["plain", "no-tracking", "own-settings"],
)
def test_a_finished_experiment_has_nothing_to_resume(experiment, no_ray, capsys, repeated):
    before = _snapshot(experiment)
    capsys.readouterr()
    code, stdout = run_tune_cli("--resume", str(experiment), "--quiet", *repeated)
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"experiment {experiment} already finished: 2 trials, best trial" in err
    assert "nothing to resume" in err
    assert stdout == ""
    assert _snapshot(experiment) == before  # no "resumed" stamp, no second test of the best


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-samples", "4"], "drop --num-samples (the experiment has 2)"),
        (["--scheduler", "asha"], "drop --scheduler (the experiment has none)"),
        (["--set", "train.epochs=3"], "drop --set (train.epochs: 2 -> 3)"),
        (
            ["--set", "model.embedding_size=64"],
            "drop --set (the space samples model.embedding_size)",
        ),
        (
            ["--tracking-uri", "sqlite:///x.db"],
            'drop --tracking-uri (tracking.uri: null -> "sqlite:///x.db")',
        ),
    ],
)
def test_an_option_that_would_change_the_experiment_is_refused(
    experiment, no_ray, capsys, args, message
):
    before = _snapshot(experiment)
    capsys.readouterr()
    code, _ = run_tune_cli("--resume", str(experiment), *args)
    err = capsys.readouterr().err
    assert code == 2
    assert f"--resume continues the experiment as it was set up; {message}" in err, err
    assert _snapshot(experiment) == before


def test_which_experiments_count_as_finished(experiment, no_ray, tmp_path):
    from recsys.tuning.driver import finished_experiment, resume_tune

    copy = tmp_path / "copy"
    shutil.copytree(experiment, copy, ignore=shutil.ignore_patterns("ray"))
    assert "already finished" in finished_experiment(copy)
    summary = json.loads((copy / "summary.json").read_text())
    # an errored trial is retried by --resume, so the experiment still has work
    (copy / "summary.json").write_text(
        json.dumps({**summary, "statuses": {"TERMINATED": 1, "ERROR": 1}})
    )
    assert finished_experiment(copy) is None
    (copy / "summary.json").write_text(json.dumps({**summary, "interrupted": True}))
    assert finished_experiment(copy) is None
    (copy / "summary.json").unlink()
    assert finished_experiment(copy) is None
    # resume_tune itself refuses a finished experiment, before Ray
    with pytest.raises(ConfigError, match="already finished"):
        resume_tune(experiment)


def test_resume_refuses_data_whose_ids_changed(experiment, no_ray, tmp_path):
    """tune.json records the user and item ids the split's indices mean; --resume on data with
    other ids (here: a changed fingerprint) is refused before Ray, naming what changed."""
    from recsys.errors import DataError
    from recsys.tuning.driver import resume_tune

    state = json.loads((experiment / "tune.json").read_text())
    assert state["data_ids"]["users"]["count"] == 120
    copy = tmp_path / "copy"
    shutil.copytree(experiment, copy)
    summary = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps({**summary, "interrupted": True}))
    state["data_ids"]["items"]["sha256"] = "0" * 64
    (copy / "tune.json").write_text(json.dumps(state))
    before = _snapshot(copy)
    with pytest.raises(DataError, match="item ids"):
        resume_tune(copy)
    assert _snapshot(copy) == before
