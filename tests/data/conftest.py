"""Fixtures for the data tests: a file writer and a loopback HTTP server."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """``write("sub/name.ext", text)`` writes a UTF-8 file under ``tmp_path`` and returns it."""

    def _write(relative: str, text: str, encoding: str = "utf-8") -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding=encoding)
        return path

    return _write


@pytest.fixture
def cards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An extra card folder registered through RECSYS_DATASET_CARDS."""
    from recsys.data import catalog

    folder = tmp_path / "cards"
    folder.mkdir()
    monkeypatch.setenv(catalog.CARDS_ENV, str(folder))
    return folder


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh dataset cache folder (RECSYS_DATA_DIR)."""
    from recsys.data import catalog

    folder = tmp_path / "cache"
    monkeypatch.setenv(catalog.DATA_DIR_ENV, str(folder))
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve ``tmp_path/www`` on an ephemeral 127.0.0.1 port; yields (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
