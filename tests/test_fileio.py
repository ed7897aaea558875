"""recsys.fileio (atomic writes) and recsys.jsonio (strict JSON): the permissions of what the
writers leave (as ``open(path, "w")`` would, not mkstemp's 0o600), nothing left behind by a
failed write, stale temporary files, and JSON without NaN."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from recsys import fileio
from recsys.fileio import (
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_files,
    atomic_write_text,
    remove_stale_temps,
    temp_pattern,
)
from recsys.jsonio import dumps_json, nan_for_none, plain
from tests.conftest import file_mode, strict_loads


def only(folder: Path) -> list[str]:
    """The names in ``folder``: no temporary file may be among them."""
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------ permissions


def _bytes(path: Path) -> None:
    atomic_write_bytes(path, b"data")


def _text(path: Path) -> None:
    atomic_write_text(path, "data\n")


def _open_binary(path: Path) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(b"data")


def _open_text(path: Path) -> None:
    with atomic_open(path, "w", suffix=".part") as fh:
        fh.write("data")


def _path(path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"data")


def _files(path: Path) -> None:
    atomic_write_files({path: b"data", path.with_name("other"): b"x"})


def _checkpoint_reexports(path: Path) -> None:
    from recsys.train.checkpoint import atomic_write_bytes, atomic_write_text

    atomic_write_bytes(path, b"data")
    atomic_write_text(path, "data")


def _save_checkpoint(path: Path) -> None:
    import torch

    from recsys.train.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(path, {"w": torch.ones(2)})
    assert load_checkpoint(path)["w"].tolist() == [1.0, 1.0]


WRITERS: dict[str, Callable[[Path], None]] = {
    "atomic_write_bytes": _bytes,
    "atomic_write_text": _text,
    "atomic_open_wb": _open_binary,
    "atomic_open_w": _open_text,
    "atomic_path": _path,
    "atomic_write_files": _files,
    "checkpoint_reexports": _checkpoint_reexports,
    "save_checkpoint": _save_checkpoint,
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_written_files_get_the_mode_open_would_give(
    writer: str, umask: int, tmp_path: Path
) -> None:
    path = tmp_path / "sub" / "file.bin"  # the folder is created
    WRITERS[writer](path)
    assert file_mode(path) == 0o666 & ~umask
    path.chmod(0o600)  # replacing a file gives the new file the same mode
    WRITERS[writer](path)
    assert file_mode(path) == 0o666 & ~umask
    assert not [n for n in only(path.parent) if n.startswith(".")]


def test_the_mode_follows_the_umask_of_the_moment(tmp_path: Path) -> None:
    """The umask is read for every file, not once per process."""
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a", b"a")
        os.umask(0o027)
        atomic_write_bytes(tmp_path / "b", b"b")
    finally:
        os.umask(old)
    assert (file_mode(tmp_path / "a"), file_mode(tmp_path / "b")) == (0o644, 0o640)


def test_text_is_utf8_and_newlines_as_given(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "t", "é\r\nx\n")
    assert (tmp_path / "t").read_bytes() == "é\r\nx\n".encode()
    with atomic_open(tmp_path / "u", "w", newline="") as fh:
        fh.write("a\nb")
    assert (tmp_path / "u").read_bytes() == b"a\nb"


# --------------------------------------------------------------------- failed writes


class Boom(Exception):
    pass


def _old(tmp_path: Path) -> Path:
    path = tmp_path / "f.json"
    path.write_text("old")
    return path


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_a_failing_block_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, error: type[BaseException]
) -> None:
    path = _old(tmp_path)
    with pytest.raises(error), atomic_open(path, "w", suffix=".part") as fh:
        fh.write("new, half written")
        raise error()
    with pytest.raises(error), atomic_path(path) as tmp:
        tmp.write_text("new")
        raise error()
    assert path.read_text() == "old"
    assert only(tmp_path) == ["f.json"]


def test_a_failing_move_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _old(tmp_path)

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(path, "new")
    with pytest.raises(OSError, match="No space left"):
        atomic_write_files({path: b"new", tmp_path / "g": b"g"}, suffix=".part")
    assert path.read_text() == "old"
    assert only(tmp_path) == ["f.json"]


def test_a_failing_sync_leaves_the_old_file_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _old(tmp_path)

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(fileio.os, "fsync", fail)
    with pytest.raises(OSError, match="Input/output"):
        atomic_write_bytes(path, b"new")  # synced by default, as checkpoint's always was
    assert path.read_text() == "old" and only(tmp_path) == ["f.json"]
    atomic_write_bytes(path, b"new", fsync=False)
    assert path.read_text() == "new" and only(tmp_path) == ["f.json"]


def test_several_files_are_replaced_together_or_not_at_all(tmp_path: Path) -> None:
    first, second = tmp_path / "a.npy", tmp_path / "b.csv"
    first.write_bytes(b"old a")
    second.write_bytes(b"old b")
    with pytest.raises(TypeError):
        atomic_write_files({first: b"new a", second: "not bytes"}, suffix=".part")  # type: ignore[dict-item]
    assert (first.read_bytes(), second.read_bytes()) == (b"old a", b"old b")
    assert only(tmp_path) == ["a.npy", "b.csv"]
    atomic_write_files({first: b"new a", second: b"new b"}, suffix=".part")
    assert (first.read_bytes(), second.read_bytes()) == (b"new a", b"new b")
    assert only(tmp_path) == ["a.npy", "b.csv"]


def test_atomic_open_refuses_other_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x", "a"):
        pass
    assert only(tmp_path) == []


# ---------------------------------------------------------------- stale temporary files


def test_temporary_files_are_named_for_their_target(tmp_path: Path) -> None:
    target = tmp_path / "ml-100k.zip"
    with atomic_open(target, suffix=".part"):
        (name,) = [n for n in only(tmp_path) if n.startswith(".")]
    assert temp_pattern(target, ".part").fullmatch(name)
    assert name.startswith(".ml-100k.zip.") and name.endswith(".part")


def test_remove_stale_temps_removes_only_old_leftovers_of_that_target(tmp_path: Path) -> None:
    target = tmp_path / "data.zip"
    names = {
        "stale": ".data.zip.k2x_9abc.part",  # a mkstemp name of a killed download
        "stale2": ".data.zip.0a1b2c3d.part",
        "fresh": ".data.zip.ffff0000.part",  # a download still running
        "other target": ".data.zip.sha.1234abcd.part",  # a temp of "data.zip.sha"
        "no suffix": ".data.zip.1234abcd",
        "not hidden": "data.zip.1234abcd.part",
        "the target": "data.zip",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    cutoff = time.time()
    past = cutoff - 3600
    for key in ("stale", "stale2", "other target", "no suffix", "not hidden", "the target"):
        os.utime(tmp_path / names[key], (past, past))
    os.utime(tmp_path / names["fresh"], (cutoff + 60, cutoff + 60))

    removed = remove_stale_temps(target, suffix=".part", older_than=cutoff)
    assert sorted(p.name for p in removed) == sorted([names["stale"], names["stale2"]])
    kept = {k for k, n in names.items() if (tmp_path / n).exists()}
    assert kept == set(names) - {"stale", "stale2"}
    # without a cut-off every leftover of the target goes, whatever its age
    assert [p.name for p in remove_stale_temps(target, suffix=".part")] == [names["fresh"]]
    assert remove_stale_temps(tmp_path / "missing" / "x") == []


# ------------------------------------------------------------------------ strict JSON


def test_dumps_json_writes_nan_and_infinities_as_null() -> None:
    obj = {
        "b": float("nan"),
        "a": [1.5, float("inf"), -math.inf],
        "np": {"f": np.float32(0.5), "n": np.float64("nan"), "i": np.int64(3)},
        "arr": np.array([1.0, np.nan]),
        "flag": np.bool_(True),
        "path": Path("/x/y"),
        "t": (1, 2),
    }
    text = dumps_json(obj, indent=2)
    assert strict_loads(text) == {
        "b": None,
        "a": [1.5, None, None],
        "np": {"f": 0.5, "n": None, "i": 3},
        "arr": [1.0, None],
        "flag": True,
        "path": "/x/y",
        "t": [1, 2],
    }
    assert list(json.loads(text)) == ["b", "a", "np", "arr", "flag", "path", "t"]  # order kept
    assert text.startswith('{\n  "b": null,')  # indent passed on


def test_dumps_json_default_results_are_strict_too() -> None:
    class Metric:
        def __init__(self, value: float) -> None:
            self.value = value

        def __float__(self) -> float:
            return self.value

    text = dumps_json({"x": Metric(float("nan")), "y": Metric(2.0)}, default=float)
    assert strict_loads(text) == {"x": None, "y": 2.0}
    assert strict_loads(dumps_json({"s": {1}}, default=sorted)) == {"s": [1]}
    with pytest.raises(TypeError):
        dumps_json({"x": Metric(1.0)})


def test_same_text_as_json_dumps_when_there_is_no_nan() -> None:
    obj = {"model": "bpr", "valid": {"recall_at_10": 0.25, "n_users": 120}, "ks": [10, 20]}
    for kwargs in ({"indent": 2}, {"indent": 2, "sort_keys": True}, {}):
        assert dumps_json(obj, **kwargs) == json.dumps(obj, **kwargs)


def test_nan_for_none_and_plain_where_it_was() -> None:
    assert math.isnan(nan_for_none({"a": None, "b": 1.0})["a"])
    assert nan_for_none({"a": None, "b": 1.0})["b"] == 1.0
    from recsys.probe.pipeline import plain as pipeline_plain

    assert pipeline_plain is plain


def test_the_modules_do_not_import_torch() -> None:
    code = "import sys, recsys.fileio, recsys.jsonio; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
