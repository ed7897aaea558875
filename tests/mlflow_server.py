"""A real MLflow tracking server on loopback, as a pytest fixture.

``conftest.py`` imports :func:`mlflow_server`; a test that asks for it gets the server's
``http://127.0.0.1:<port>`` URI. The server is ``mlflow server`` run as a subprocess with a
sqlite backend and proxied artifact storage (``--artifacts-destination``; ``--serve-artifacts``
is MLflow 3's default), so clients log artifacts over HTTP exactly as against a team server.
It is started once per session, in its own process group, and the whole group is stopped
afterwards (MLflow's server spawns uvicorn workers that outlive a plain terminate).

The server is bound to 127.0.0.1 only. It is skipped only when no ``mlflow`` executable exists;
a server that does not come up within :data:`STARTUP_TIMEOUT` seconds fails the test, with
the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# MLflow sends usage telemetry unless told not to; a test run must not phone home. MLflow's own
# CI detection only sees PYTEST_CURRENT_TEST, which is unset while test modules are imported.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

STARTUP_TIMEOUT = 90.0
"""Seconds to wait for ``/health`` (a cold start takes 5-15 s; more on a loaded machine)."""

STOP_TIMEOUT = 15.0
"""Seconds to wait for a graceful stop before the process group is killed."""


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_mlflow_executable() -> str | None:
    """The ``mlflow`` script of this interpreter's environment, else the one on PATH."""
    name = "mlflow.exe" if os.name == "nt" else "mlflow"
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("mlflow")


def _healthy(uri: str) -> bool:
    """Whether ``GET <uri>/health`` answers 200 right now."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(f"{uri}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of the server log."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and everything it spawned: SIGTERM the group, then SIGKILL it."""
    if os.name == "nt":
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return
    group = process.pid  # start_new_session=True made the server its group's leader
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT)
    # sweep workers that ignored SIGTERM or were orphaned by their parent's exit
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``mlflow server`` on a free loopback port; yield its ``http://`` URI."""
    executable = find_mlflow_executable()
    if executable is None:
        pytest.skip("no `mlflow` executable next to the Python interpreter or on PATH")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_loopback_port()
    uri = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    command = [
        executable, "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{(root / 'srv.db').as_posix()}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    env = dict(os.environ)
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        # the job runner (for GenAI evaluation jobs) adds a handful of huey worker processes
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=(os.name != "nt"),
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _healthy(uri):
            if process.poll() is not None:
                pytest.fail(
                    f"mlflow server exited with status {process.returncode} before answering "
                    f"{uri}/health; its log:\n{_log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server did not answer {uri}/health within {STARTUP_TIMEOUT:g} s; "
                    f"its log:\n{_log_tail(log_path)}"
                )
            time.sleep(0.25)
        yield uri
    finally:
        _stop(process)
