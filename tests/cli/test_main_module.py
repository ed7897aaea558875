"""``python -m recsys`` is the ``recsys`` command."""

from __future__ import annotations

import os
import subprocess
import sys

from recsys import __version__


def test_python_dash_m_recsys_runs_the_cli(tmp_path):
    env = {**os.environ, "RECSYS_DATA_DIR": str(tmp_path), "RECSYS_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "recsys", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"recsys, version {__version__}"
    # and its exit status is main()'s: a user error is 2
    bad = subprocess.run(
        [sys.executable, "-m", "recsys", "train", "--model", "nosuch", "--no-tracking"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert bad.returncode == 2, bad.stderr
    assert "unknown model 'nosuch'" in bad.stderr
