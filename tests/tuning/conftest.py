"""Fixtures for the tuning tests: Ray on loopback only, small synthetic data.

Ray reads some settings when it is imported, so they are set here, before any test module
imports it: no usage stats, no ``uv run`` runtime environment, and
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which makes Ray advertise 127.0.0.1 instead of the
machine's network address (Ray's "no cluster" mode), for the local instance, its workers and
the test cluster alike.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
if "ray._private.ray_constants" in sys.modules:  # imported before this file: patch it too
    sys.modules["ray._private.ray_constants"].ENABLE_RAY_CLUSTER = False

DATA = "synthetic-300x200x6000"
"""300 users x 200 items, planted factors: an epoch of BPR takes a few milliseconds."""

FAST = ["--set", "train.batch_size=256", "--set", "model.embedding_size=32"]
"""Options that make every trial small."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray instance (2 CPUs, loopback) for every test of a module; shut down after."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        dashboard_port=free_ports(1)[0],
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        yield
    finally:
        ray.shutdown()


def run_tune_cli(*args: str) -> tuple[int, str]:
    """``recsys tune ARGS`` in this process: its exit status and what it printed."""
    import contextlib
    import io

    from recsys.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["tune", *args])
    return code, out.getvalue()
