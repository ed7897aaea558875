"""`recsys evaluate` and `recsys recommend` on odd input: run folders that did not finish,
repeated or mistyped user ids, NaN metrics in --json, an output path that is a folder."""

from __future__ import annotations

import io
import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest

from recsys.cli import main
from recsys.experiment import recommend_run

DATA = "synthetic-120x80x2400"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A popularity run whose tail-slice metrics are NaN (an empty tail: tail_share=0)."""
    root = tmp_path_factory.mktemp("audit")
    args = ["train", "--dataset", DATA, "--model", "pop", "-o", str(root / "runs")]
    args += ["--no-tracking", "--quiet", "--set", "train.epochs=1"]
    args += ["--set", "eval.item_slices=true", "--set", "eval.tail_share=0"]
    assert main(args) == 0
    (config,) = (root / "runs").glob("*/config.yaml")
    return config.parent


def _copy(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def test_evaluate_json_is_valid_json_when_a_metric_is_nan(run, capsys):
    assert main(["evaluate", str(run), "--json"]) == 0

    def reject(constant):
        raise AssertionError(f"{constant} is not JSON")

    metrics = json.loads(capsys.readouterr().out, parse_constant=reject)
    assert metrics["test"]["recall_at_10_tail"] is None  # no user has tail items
    saved = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["recall_at_10"] == pytest.approx(saved["test"]["recall_at_10"])


def test_recommend_refuses_a_user_id_given_twice(run, tmp_path, capsys):
    assert main(["recommend", str(run), "-u", "7", "-u", "8", "-u", "7"]) == 2
    assert "user id '7' is given more than once" in capsys.readouterr().err
    listed = tmp_path / "users.txt"
    listed.write_text("3\n")
    assert main(["recommend", str(run), "-u", "3", "--users-file", str(listed)]) == 2
    err = capsys.readouterr().err
    assert "user id '3' is given more than once" in err and "Traceback" not in err


def test_evaluate_and_recommend_name_a_failed_run_instead_of_using_it(run, tmp_path, capsys):
    failed = _copy(run, tmp_path)
    (failed / "metrics.json").unlink()
    (failed / "run.json").write_text(
        json.dumps({"status": "failed", "error": "TrainingDivergedError: loss is NaN"})
    )
    for command in (["evaluate", str(failed)], ["recommend", str(failed), "-u", "1"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "the run failed before it was tested" in err
        assert "TrainingDivergedError: loss is NaN" in err and "Traceback" not in err


def test_an_interrupted_run_is_used_with_a_warning(run, tmp_path, capsys, caplog):
    interrupted = _copy(run, tmp_path)
    (interrupted / "metrics.json").unlink()
    (interrupted / "run.json").write_text(json.dumps({"status": "interrupted"}))
    with caplog.at_level(logging.WARNING, logger="recsys"):
        assert main(["recommend", str(interrupted), "-u", "1", "-k", "2"]) == 0
    assert "recsys train --resume" in caplog.text
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 2


def test_recommend_output_that_is_a_folder_is_named_as_the_option(run, tmp_path, capsys):
    assert main(["recommend", str(run), "-u", "1", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'--output'" in err and "is a directory" in err
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_recommend_run_takes_one_string_as_one_id_and_arrays_of_ids(run):
    recs = recommend_run(run, 2, "10")  # not the users '1' and '0'
    assert recs["user"].tolist() == ["10", "10"]
    recs = recommend_run(run, 2, np.array(["10", "11"]))
    assert recs["user"].tolist() == ["10", "10", "11", "11"]
    recs = recommend_run(run, 2, pd.Series([12, 13]))  # ids compare as strings
    assert recs["user"].tolist() == ["12", "12", "13", "13"]
    assert recommend_run(run, 2, []).empty  # no users given: no rows, not every user
