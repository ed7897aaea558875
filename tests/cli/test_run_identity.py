"""A run folder knows which users and items its indices mean, and how it ended.

``run.json`` records the count and sha256 of the user and item id lists the run was trained
on (``data_ids``) and where its model came from (``model_source``). ``evaluate``,
``recommend``, ``export``, ``probe`` and ``train --resume`` refuse a run whose data now has
other ids (before: same-sized data with renamed ids was used silently, every index naming
another id), and a run whose ``run.json`` says it failed (before: refused only when it had
no ``metrics.json``). ``run_name`` is one folder name under ``output_dir``, and
``recommendations.csv`` is written atomically like the other run files.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from recsys import __version__
from recsys.cli import main
from recsys.config import build_run_config
from recsys.errors import ConfigError
from recsys.experiment import train_run
from tests.cli.reopen_commands import PROBE, refusals, snapshot

FAST = ["--no-tracking", "--quiet", "--set", "train.num_threads=1"]


def _write_inter(
    folder: Path, rename_user: str | None = None, rename_item: str | None = None, extra: int = 0
) -> Path:
    """An atomic ``toy.inter``: users 1..30 with 10 items each out of 1..40; user ``1`` and
    item ``1`` optionally renamed (the same shape, other ids), ``extra`` users added."""
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(1, 31 + extra):
        for j in range(10):
            i = (u * 7 + j * 3) % 40 + 1
            user = rename_user if u == 1 and rename_user else str(u)
            item = rename_item if i == 1 and rename_item else str(i)
            lines.append(f"{user}\t{item}\t{1 + (u + j) % 5}.0\t{u * 100 + j}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.inter").write_text("\n".join(lines) + "\n")
    return folder


def _copy(run: Path, dest: Path, **record: object) -> Path:
    """A copy of ``run`` whose ``run.json`` has ``record``'s keys (None: removed)."""
    shutil.copytree(run, dest)
    saved = json.loads((dest / "run.json").read_text())
    for key, value in record.items():
        if value is None:
            saved.pop(key, None)
        else:
            saved[key] = value
    (dest / "run.json").write_text(json.dumps(saved))
    return dest


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch BPR run on ``toy``; its folder and the data folder it read."""
    root = tmp_path_factory.mktemp("identity")
    data = _write_inter(root / "toy")
    args = ["train", "-m", "bpr", "--data-path", str(data), "-o", str(root / "runs"), *FAST]
    assert main([*args, "--set", "train.epochs=1", "--set", "run_name=bpr"]) == 0
    return root / "runs" / "bpr", data


@pytest.fixture
def data(trained):
    """The run's data folder, rewritten as it was after the test."""
    yield trained[1]
    _write_inter(trained[1])


def test_run_json_records_the_data_ids_and_the_model_source(trained):
    run, _ = trained
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished"
    ids = record["data_ids"]
    assert ids["dataset"] == "toy"
    assert ids["users"]["count"] == 30 and ids["items"]["count"] == 40
    assert len(ids["users"]["sha256"]) == 64 and ids["users"]["sha256"] != ids["items"]["sha256"]
    assert record["model_source"] == {
        "distribution": "recsys",
        "version": __version__,
        "target": "recsys.models.bpr:BPR",
    }


@pytest.mark.parametrize(
    ("change", "which"),
    [
        ({"rename_user": "99", "rename_item": "41"}, ["user ids differ", "item ids differ"]),
        ({"rename_item": "41"}, ["item ids differ"]),
    ],
    ids=["users-and-items", "items"],
)
def test_a_run_whose_data_has_other_ids_is_refused(trained, data, tmp_path, capsys, change, which):
    run, _ = trained
    before = snapshot(run)
    _write_inter(data, **change)  # the same 30 users x 40 items, other ids
    out = tmp_path / "out"
    # before: exit 0; recommend named user 2 with user 1's scores and every item shifted
    for err in refusals(run, out, capsys):
        assert f"{run}: the data (data.path={data}) changed since the run" in err, err
        assert all(part in err for part in which), err
        assert ("user ids differ" in err) == ("user ids differ" in which)
        assert "Traceback" not in err
    assert not out.exists()
    assert snapshot(run) == before
    _write_inter(data)  # the data it was trained on: used again
    assert main(["recommend", str(run), "-u", "2", "-k", "3"]) == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 3


def test_a_run_from_before_the_fingerprint_is_still_used(trained, data, tmp_path, capsys, caplog):
    old = _copy(trained[0], tmp_path / "old", data_ids=None, model_source=None)
    with caplog.at_level(logging.INFO, logger="recsys"):
        assert main(["recommend", str(old), "-u", "2", "-k", "3"]) == 0
    assert "records no fingerprint of its user and item ids" in caplog.text
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 3
    # its size is still checked
    _write_inter(data, extra=1)
    assert main(["recommend", str(old), "-u", "2"]) == 2
    err = capsys.readouterr().err
    assert "now has 31 users x 40 items but the run's split has shape (30, 40)" in err


@pytest.fixture
def interrupted(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A 3-epoch BPR run on ``toy`` interrupted (Ctrl-C) after its first epoch; its folder
    and its data folder."""
    from recsys.tracking import NullTracker

    def log_metrics(self, metrics, step=None):
        if step == 0:
            raise KeyboardInterrupt

    data = _write_inter(tmp_path / "toy")
    with monkeypatch.context() as patch:
        patch.setattr(NullTracker, "log_metrics", log_metrics)
        code = main(["train", "-m", "bpr", "--data-path", str(data), "-o", str(tmp_path / "runs"),
                     *FAST, "--set", "train.epochs=3", "--set", "run_name=intr"])  # fmt: skip
    assert code == 130
    run = tmp_path / "runs" / "intr"
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    return run, data


def test_resume_refuses_data_with_other_ids_before_writing_to_the_folder(interrupted, capsys):
    run, data = interrupted
    before = snapshot(run)
    capsys.readouterr()
    _write_inter(data, rename_item="41")
    # before: the run trained on, every item index naming the next item's id
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "changed since the run: the item ids differ" in err and "Traceback" not in err
    assert snapshot(run) == before  # train.log and run.json included
    # a user more: before, an epoch trained and metrics.json was written, then it failed
    # with "user index out of range for exclude[0] with 30 users"
    _write_inter(data, extra=1)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"the data (data.path={data}) now has 31 users x 40 items" in err
    assert "the run's split has shape (30, 40)" in err
    assert snapshot(run) == before
    _write_inter(data)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and record["data_ids"]["items"]["count"] == 40


def test_a_run_that_failed_after_it_was_tested_is_refused(trained, tmp_path, capsys):
    failed = _copy(trained[0], tmp_path / "failed", status="failed", error="DataError: boom")
    assert (failed / "metrics.json").is_file()
    capsys.readouterr()
    for command in (
        ["evaluate", str(failed)],
        ["recommend", str(failed), "-u", "2"],
        ["export", str(failed), "-o", str(tmp_path / "out")],
        ["probe", str(failed), *PROBE, "-o", str(tmp_path / "out")],
    ):
        # before: exit 0 without a word, metrics.json and the checkpoint from two attempts
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert f"{failed}: the run failed (DataError: boom)" in err, err
        assert f"recsys train --resume {failed}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_an_interrupted_a_missing_or_an_unreadable_record_is_used(
    trained, tmp_path, capsys, caplog
):
    interrupted = _copy(trained[0], tmp_path / "interrupted", status="interrupted")
    with caplog.at_level(logging.WARNING, logger="recsys"):
        assert main(["recommend", str(interrupted), "-u", "2", "-k", "2"]) == 0
    assert "was interrupted after it was tested" in caplog.text
    caplog.clear()
    older = _copy(trained[0], tmp_path / "older")
    (older / "run.json").unlink()  # a run from before run.json
    with caplog.at_level(logging.WARNING, logger="recsys"):
        assert main(["recommend", str(older), "-u", "2", "-k", "2"]) == 0
    assert caplog.text == ""
    (older / "run.json").write_text("{bad")
    with caplog.at_level(logging.WARNING, logger="recsys"):
        assert main(["recommend", str(older), "-u", "2", "-k", "2"]) == 0
    assert "run.json cannot be read" in caplog.text


@pytest.mark.parametrize("name", ["../escape", "ABSOLUTE", "a/b", "..", ".", "a\\b"])
def test_run_name_must_be_one_folder_name(tmp_path, capsys, name):
    out = tmp_path / "runs"
    name = str(tmp_path / "escape") if name == "ABSOLUTE" else name
    args = ["train", "-m", "pop", "--dataset", "synthetic-60x40x600", "-o", str(out), *FAST]
    # before: a run folder outside -o (`..`, an absolute path), or "No such file or directory"
    assert main([*args, "--set", f"run_name={name}"]) == 2
    err = capsys.readouterr().err
    assert "error: run_name: must be a plain folder name" in err and f"(got {name!r})" in err
    assert not out.exists() and not (tmp_path / "escape").exists()
    with pytest.raises(ConfigError, match="run_name"):
        build_run_config(run_name=name)


def _pop_config(output_dir: Path, run_name: str):
    """A quiet, untracked Pop run on a tiny synthetic dataset."""
    return build_run_config(
        run_name=run_name,
        model={"name": "pop"},
        data={"name": "synthetic-60x40x600"},
        output_dir=str(output_dir),
        tracking={"enabled": False},
        train={"num_threads": 1, "progress": False},
    )


def test_a_plain_run_name_is_the_folder_name(tmp_path):
    assert train_run(_pop_config(tmp_path, "my run..v2")).run_dir == tmp_path / "my run..v2"


class _Unwritable:
    """A value whose text cannot be made: writing it fails, as a full disk would."""

    def __str__(self) -> str:
        raise OSError(28, "No space left on device")


def test_recommendations_csv_is_never_left_half_written(tmp_path, monkeypatch):
    import recsys.experiment as experiment

    real = experiment.recommend

    def failing(*args, **kwargs):
        frame = real(*args, **kwargs)
        return frame.assign(score=[*frame["score"][:-1], _Unwritable()])

    monkeypatch.setattr(experiment, "recommend", failing)
    with pytest.raises(OSError, match="No space left"):
        train_run(_pop_config(tmp_path, "r"))
    run = tmp_path / "r"
    assert (run / "metrics.json").is_file()
    # before: an empty or truncated recommendations.csv next to a complete metrics.json
    assert not (run / "recommendations.csv").exists()
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
