"""The shipped plugins' packaging: they depend on this framework, not on the unrelated
``recsys`` project on PyPI, carry their metadata, and their tests run outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = sorted(path.parent for path in (ROOT / "plugins").glob("*/pyproject.toml"))


def _project(pyproject: Path) -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads(pyproject.read_text())["project"]


def _recsys_requirement(pyproject: Path):
    requirements = pytest.importorskip("packaging.requirements")
    found = [
        requirement
        for requirement in map(requirements.Requirement, _project(pyproject)["dependencies"])
        if requirement.name == "recsys"
    ]
    assert len(found) == 1, f"{pyproject}: one dependency on recsys, not {found}"
    return found[0]


def test_there_are_plugins():
    assert {p.name for p in PLUGINS} >= {"recsys-denoise", "recsys-diffusion", "recsys-vae"}


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_the_recsys_dependency_is_this_framework_only(plugin):
    core = _project(ROOT / "pyproject.toml")["version"]
    specifier = _recsys_requirement(plugin / "pyproject.toml").specifier
    assert specifier.contains(core), f"{plugin.name} refuses the core it ships with ({core})"
    # the unrelated PyPI project's pre-releases, which an unbounded "recsys" installs
    assert not specifier.contains("0.0.1a3", prereleases=True)
    # and not a core whose minor version may have changed the API the plugin uses
    major, minor = (int(part) for part in core.split(".")[:2])
    assert not specifier.contains(f"{major}.{minor + 1}.0")


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugin_metadata_has_license_and_readme(plugin):
    project = _project(plugin / "pyproject.toml")
    assert project.get("license") == _project(ROOT / "pyproject.toml")["license"]
    assert project.get("readme") == "README.md"
    assert (plugin / "README.md").is_file()


SLOW_TEST = """
import pytest


@pytest.mark.slow
def test_slow():
    pass
"""


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugin_tests_register_the_slow_marker(plugin, tmp_path):
    """A copy of the plugin's tests, outside the repository (whose pytest configuration
    registers ``slow``), takes ``@pytest.mark.slow`` under ``--strict-markers``."""
    tests = tmp_path / plugin.name / "tests"
    tests.mkdir(parents=True)
    if (plugin / "tests" / "conftest.py").is_file():
        shutil.copy(plugin / "tests" / "conftest.py", tests)
    (tests / "test_marker.py").write_text(SLOW_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--strict-markers",
            "-p",
            "no:cacheprovider",
            "-c",
            str(tmp_path / "pytest.ini"),
            str(tests),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
