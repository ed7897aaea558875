"""The commands that reopen a finished run folder (evaluate, recommend, export, probe), for tests
that change the run's data and expect every one of them to refuse it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.cli import main

PROBE = ["--epochs", "1", "--no-tracking", "--quiet", "--no-baselines", "-k", "4"]


def reopen_commands(run: Path, out: Path) -> dict[str, list[str]]:
    """Each reopening command on ``run``, writing (if at all) under ``out``."""
    return {
        "evaluate": ["evaluate", str(run)],
        "recommend": ["recommend", str(run), "-u", "2", "-k", "3", "-o", str(out / "r.csv")],
        "export": ["export", str(run), "-o", str(out)],
        "probe": ["probe", str(run), *PROBE, "-o", str(out)],
    }


def refusals(run: Path, out: Path, capsys: pytest.CaptureFixture) -> Iterator[str]:
    """Run every reopening command, assert it exits 2 with no traceback, and yield its
    error text for the caller's own checks."""
    capsys.readouterr()
    for name, command in reopen_commands(run, out).items():
        assert main(command) == 2, name
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        yield err


def snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a run folder: its bytes and modification time (to show a refused command
    changed nothing)."""
    return {
        str(path.relative_to(run)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(run.rglob("*"))
        if path.is_file()
    }
