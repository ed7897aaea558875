"""The wheel carries what an installed recsys reads at run time: the dataset cards and the
search spaces (top-level folders of the repository), and every subpackage."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_list_names_every_subpackage():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "recsys").rglob("__init__.py")
    }
    assert listed - {"recsys.resources.datasets", "recsys.resources.spaces"} == on_disk


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """recsys built as a wheel (no build isolation: setuptools from this environment) and
    installed, without its dependencies, into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp / "dist").glob("recsys-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for card in (ROOT / "datasets").glob("*.yaml"):
        assert f"recsys/resources/datasets/{card.name}" in names
    for space in (ROOT / "tune" / "spaces").glob("*.yaml"):
        assert f"recsys/resources/spaces/{space.name}" in names
    site = tmp / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    return site


def test_an_installed_wheel_finds_its_cards_and_spaces(installed, tmp_path):
    script = (
        "import recsys, recsys.data.catalog as c, recsys.cli.tune as t\n"
        "print(recsys.__file__)\n"
        "print(c.CARDS_DIR)\n"
        "print(t.SPACES_DIR)\n"
        "print(sorted(card.name for card in c.list_cards()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, check=True, capture_output=True,
        text=True,
    ).stdout.splitlines()  # fmt: skip
    package = installed / "recsys"
    assert out[0] == str(package / "__init__.py")
    assert out[1] == str(package / "resources" / "datasets")
    assert out[2] == str(package / "resources" / "spaces")
    assert "ml-100k" in out[3] and "gowalla" in out[3]
    assert (package / "resources" / "spaces" / "bpr.yaml").is_file()
