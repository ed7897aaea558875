"""Atomic file writes: a temporary file in the target's folder, moved into place.

Every writer here writes to ``.<name>.<random><suffix>`` next to the target and moves it
over the target with :func:`os.replace` only once it is complete, so a reader never sees a
half-written file and a crash mid-write leaves the previous file whole. On any error, the
interrupt included, the temporary file is removed and the target is left as it was.

The final file gets the permissions a plain ``open(path, "w")`` gives it (``0o666`` less
the umask, and the folder's default ACL where it has one): the temporary file is created
with mode ``0o666`` and the operating system applies the umask, as for any new file.
(:func:`tempfile.mkstemp` creates ``0o600`` files, which other users could not read.)

No torch here: the data layer and the command line use these without importing it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_files",
    "atomic_write_text",
    "remove_stale_temps",
    "temp_pattern",
]

_FLAGS = (
    os.O_RDWR
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_ATTEMPTS = 100  # tempfile's TMP_MAX is larger, but 8 random hex digits rarely collide

PathLike = str | os.PathLike[str]


def _create_temp(path: Path, suffix: str) -> tuple[int, Path]:
    """Create ``.<name>.<8 hex digits><suffix>`` in ``path``'s folder; its fd and path.

    Created exclusively (never an existing file or a link), mode ``0o666`` before the umask.
    """
    for _ in range(_ATTEMPTS):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, _FLAGS, 0o666)
        except FileExistsError:
            continue
        return fd, tmp
    raise FileExistsError(
        errno.EEXIST, "no unused temporary file name", str(path.parent / f".{path.name}.*")
    )


@contextlib.contextmanager
def atomic_open(
    path: PathLike,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    suffix: str = "",
    fsync: bool = False,
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the block ends.

    ``mode`` is ``"wb"`` or ``"w"`` (text, ``encoding`` default UTF-8, ``newline`` as for
    :func:`open`). ``path``'s folder is created if needed. When the block ends normally the
    file is flushed (and, with ``fsync``, synced to disk) and moved to ``path``; when it
    raises, the temporary file is removed and ``path`` is untouched. ``suffix`` ends the
    temporary file's name (``".part"``, for example).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path, suffix)
    try:
        try:
            if mode == "wb":
                handle: IO[Any] = os.fdopen(fd, "wb")
            else:
                handle = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        except BaseException:
            os.close(fd)
            raise
        with handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: PathLike, *, suffix: str = "", fsync: bool = False) -> Iterator[Path]:
    """A temporary path that replaces ``path`` when the block ends, for writers that take a
    file name (``torch.save``, ``numpy.save``), not an open file.

    The temporary file exists (empty) when the block starts, so writing to it keeps its
    permissions; the rest is as :func:`atomic_open`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path, suffix)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(
    path: PathLike, data: bytes, *, suffix: str = "", fsync: bool = True
) -> None:
    """Write ``data`` to ``path`` through a temporary file and :func:`os.replace`, synced to
    disk before the move unless ``fsync`` is false."""
    with atomic_open(path, "wb", suffix=suffix, fsync=fsync) as handle:
        handle.write(data)


def atomic_write_text(
    path: PathLike, text: str, *, encoding: str = "utf-8", suffix: str = "", fsync: bool = True
) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded (UTF-8 by default; newlines as given)."""
    atomic_write_bytes(path, text.encode(encoding), suffix=suffix, fsync=fsync)


def atomic_write_files(
    files: Mapping[PathLike, bytes], *, suffix: str = "", fsync: bool = False
) -> None:
    """Write several files, each to a temporary file first, and move them into place only once
    all are written, so a failure (a full disk) leaves none of them replaced.

    The moves themselves are one :func:`os.replace` each: a crash between two of them
    leaves some files new and some old. On any error the temporary files are removed.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for target, data in files.items():
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = _create_temp(target, suffix)
            temps.append((tmp, target))
            try:
                handle = os.fdopen(fd, "wb")
            except BaseException:
                os.close(fd)
                raise
            with handle:
                handle.write(data)
                handle.flush()
                if fsync:
                    os.fsync(handle.fileno())
        for tmp, target in temps:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _target in temps:
            tmp.unlink(missing_ok=True)
        raise


def temp_pattern(path: PathLike, suffix: str = "") -> re.Pattern[str]:
    """The names of the temporary files these writers make for ``path`` (and
    :func:`tempfile.mkstemp` made before them): ``.<name>.<random><suffix>``."""
    name = Path(path).name
    return re.compile(rf"\.{re.escape(name)}\.[A-Za-z0-9_]+{re.escape(suffix)}")


def remove_stale_temps(
    path: PathLike, *, suffix: str = "", older_than: float | None = None
) -> list[Path]:
    """Remove the temporary files a writer of ``path`` left behind (a process killed
    mid-write); returns the removed paths.

    Only files named as :func:`temp_pattern` says, in ``path``'s folder, are candidates, and
    with ``older_than`` (a :func:`time.time` value) only those last modified before it. Call
    it only while no other process can be writing ``path`` (under a lock), or with
    ``older_than`` well in the past. Files that cannot be removed are left.
    """
    path = Path(path)
    pattern = temp_pattern(path, suffix)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if older_than is not None and entry.stat(follow_symlinks=False).st_mtime >= older_than:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed
