"""`recsys train --resume`: the run continues as its config.yaml describes it, and a finished
run has nothing to resume.

An option that would change the run's config is a usage error (config.yaml would no longer say
what the run did); one that repeats the run's own setting is accepted. A run that finished says
so, exits 0 and leaves its folder as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from recsys.cli import main
from recsys.errors import ConfigError
from tests.cli.reopen_commands import snapshot

DATA = "synthetic-120x80x2400"
FAST = ["--set", "train.batch_size=256", "--quiet", "--no-tracking"]


def _train(out: Path, *args: str) -> Path:
    code = main(["train", "--dataset", DATA, "-o", str(out), *FAST, *args])
    assert code == 0
    (run,) = (p.parent for p in out.glob("*/config.yaml"))
    return run


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A BPR run that trained all its 3 epochs."""
    return _train(tmp_path_factory.mktemp("finished"), "-m", "bpr", "--set", "train.epochs=3")


@pytest.fixture
def interrupted(tmp_path, monkeypatch) -> Path:
    """A 4-epoch BPR run interrupted (Ctrl-C) after its second epoch."""
    from recsys.tracking import NullTracker

    def log_metrics(self, metrics, step=None):
        if step == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(NullTracker, "log_metrics", log_metrics)
        code = main(["train", "--dataset", DATA, "-o", str(tmp_path / "runs"), *FAST,
                     "-m", "bpr", "--set", "train.epochs=4"])  # fmt: skip
    assert code == 130
    (run,) = (p.parent for p in (tmp_path / "runs").glob("*/config.yaml"))
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert not (run / "metrics.json").exists()
    return run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.epochs=6"], "would change it: train.epochs: 3 -> 6"),
        (["--set", "train.learning_rate=0.01"], "train.learning_rate: 0.001 -> 0.01"),
        (["--device", "cuda:0"], 'train.device: "cpu" -> "cuda:0"'),
        (["--tracking-uri", "sqlite:///x.db"], 'tracking.uri: null -> "sqlite:///x.db"'),
        (["-o", "elsewhere"], "--resume takes the run's own config; drop --output-dir"),
    ],
)
def test_an_option_that_would_change_the_run_is_refused(finished, capsys, args, message):
    before = snapshot(finished)
    capsys.readouterr()
    assert main(["train", "--resume", str(finished), *args]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    assert snapshot(finished) == before


def test_extending_an_interrupted_run_is_refused_and_config_yaml_stays_true(interrupted, capsys):
    before = snapshot(interrupted)
    capsys.readouterr()
    assert main(["train", "--resume", str(interrupted), "--set", "train.epochs=6"]) == 2
    assert "train.epochs: 4 -> 6" in capsys.readouterr().err
    assert snapshot(interrupted) == before
    # resumed with its own settings repeated, it finishes its 4 epochs and says so
    args = ["--set", "train.epochs=4", "--no-tracking", "--device", "cpu", "--quiet"]
    assert main(["train", "--resume", str(interrupted), *args]) == 0
    config = yaml.safe_load((interrupted / "config.yaml").read_text())
    history = json.loads((interrupted / "history.json").read_text())
    metrics = json.loads((interrupted / "metrics.json").read_text())
    assert config["train"]["epochs"] == 4
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    assert metrics["epochs_run"] == 4
    assert json.loads((interrupted / "run.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("extra", [[], ["--no-tracking", "--quiet", "--set", "train.epochs=3"]])
def test_a_finished_run_has_nothing_to_resume(finished, capsys, extra):
    before = snapshot(finished)
    capsys.readouterr()
    assert main(["train", "--resume", str(finished), *extra]) == 0
    captured = capsys.readouterr()
    assert f"run {finished} already finished: it trained all 3 epochs" in captured.err
    assert "nothing to resume" in captured.err
    assert captured.out == ""
    assert snapshot(finished) == before  # nothing re-tested, rewritten or logged


def test_a_finished_closed_form_run_has_nothing_to_resume(tmp_path, capsys):
    run = _train(tmp_path, "-m", "pop")
    before = snapshot(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert "pop fits in closed form" in capsys.readouterr().err
    assert snapshot(run) == before


def test_a_run_its_model_ended_early_has_nothing_to_resume(tmp_path, capsys):
    """DNIS without fine-tuning ends after its search (2 of train.epochs=6 here): not early
    stopping, not the epoch limit, yet finished."""
    schedule = ["model.warm_start_epochs=1", "model.search_epochs=1", "model.finetune=false"]
    run = _train(
        tmp_path, "-m", "dnis", "--set", "train.epochs=6", "--set", "model.n_blocks=4",
        *(arg for key in schedule for arg in ("--set", key)),
    )  # fmt: skip
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
    before = snapshot(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert "the model's schedule ended it after 2 epochs" in capsys.readouterr().err
    assert snapshot(run) == before


def test_train_run_refuses_to_resume_a_finished_run(finished):
    from recsys.experiment import load_run_config, train_run

    before = snapshot(finished)
    with pytest.raises(ConfigError, match="already finished"):
        train_run(load_run_config(finished), resume_dir=finished)
    assert snapshot(finished) == before
