"""`recsys tune --address`: the trials run on an existing Ray cluster (a head on loopback).

The head is ``ray start --head --block`` on 127.0.0.1 with its own temp folder, ports and
token; it is stopped by terminating that process (``--block`` makes it take every Ray process
it started down with it), then its process group is swept. ``ray stop`` is not used: it stops
every Ray instance of this user on the machine, including ones other tests or people run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tests.tuning.conftest import DATA, FAST, free_ports

START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def _ray_env(token: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # advertise 127.0.0.1 only
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``ray start --block`` (it stops its node), then sweep its process group."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # start_new_session: the group is its own
    process.wait()


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """A one-node Ray cluster whose head listens on 127.0.0.1 only."""
    ray = Path(sys.executable).parent / "ray"
    if not ray.is_file():
        pytest.skip("no `ray` executable next to the Python interpreter")
    import ray as ray_module

    if ray_module.is_initialized():  # a Ray left over in this process would be used instead
        ray_module.shutdown()
    port, *others = free_ports(6)
    # a short folder: Ray's unix sockets live in it and socket paths are limited to 107 bytes
    temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    token = secrets.token_hex(32)
    log_path = tmp_path / "head.log"
    command = [
        str(ray), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--num-cpus", "2", "--num-gpus", "0",
        "--include-dashboard=false", "--dashboard-port", str(others[0]),
        "--dashboard-agent-listen-port", str(others[1]),
        "--dashboard-agent-grpc-port", str(others[2]),
        "--runtime-env-agent-port", str(others[3]),
        "--metrics-export-port", str(others[4]),
        "--temp-dir", str(temp_dir), "--disable-usage-stats",
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            env=_ray_env(token),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Ray runtime started" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start; its log:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield SimpleNamespace(address=f"127.0.0.1:{port}", temp_dir=temp_dir, token=token)
    finally:
        _stop(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_trials_run_on_an_existing_cluster(ray_head, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        "fixed:\n  train.epochs: 3\n"
        "params:\n  train.learning_rate: {type: grid, values: [0.01, 0.001]}\n"
    )
    recsys = Path(sys.executable).parent / "recsys"
    command = [
        str(recsys), "tune", "--model", "bpr", "--dataset", DATA, "--space", str(space),
        "--num-samples", "1", "-o", str(tmp_path / "runs"), "--name", "on-cluster",
        "--address", ray_head.address, "--no-tracking", "--quiet", *FAST,
    ]  # fmt: skip
    done = subprocess.run(
        command,
        env=_ray_env(ray_head.token),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = tmp_path / "runs" / "on-cluster"
    summary = json.loads((folder / "summary.json").read_text())
    # the driver joined the head's cluster instead of starting its own
    assert summary["ray"]["address"] == ray_head.address
    assert summary["ray"]["requested_address"] == ray_head.address
    assert f"Ray at {ray_head.address}" in done.stdout
    trials = pd.read_csv(folder / "trials.csv")
    assert len(trials) == 2 and set(trials["status"]) == {"TERMINATED"}
    assert set(trials["node_ip"]) == {"127.0.0.1"} and set(trials["device"]) == {"cpu"}
    # every trial ran in a worker process of that cluster: its log is in the head's folder
    logs = ray_head.temp_dir / "session_latest" / "logs"
    for result in (folder / "ray").glob("trial_*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        assert rows and {row["node_ip"] for row in rows} == {"127.0.0.1"}
        pids = {row["pid"] for row in rows}
        for pid in pids:
            assert list(logs.glob(f"worker-*-{pid}.out")), f"no worker log for pid {pid}"
    assert summary["best"]["test"]
