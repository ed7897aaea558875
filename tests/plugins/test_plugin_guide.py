"""docs/plugins.md agrees with what the registry and the shipped plugins do (its code blocks
are tested in ``tests/models/test_plugin_docs_snippet.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recsys.models.registry import BATCH_KINDS

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def _block(language: str, first_line: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", GUIDE, re.S)
    found = [block for block in blocks if block.startswith(first_line)]
    assert len(found) == 1, f"no single ```{language} block starting {first_line!r}"
    return found[0]


def test_the_guide_lists_every_batch_kind():
    # a row of the batch table for each kind the registry accepts, and the counts agree
    rows = re.findall(r'^  \| `"([a-z_]+)"` \|', GUIDE, re.M)
    assert sorted(rows) == sorted(BATCH_KINDS)
    words = {4: "four", 5: "five", 6: "six"}
    assert f"one of the {words[len(BATCH_KINDS)]} above" in GUIDE
    listed = re.search(r"\*\*`batch_kind`\*\* is one of (\w+): (.*?)\. The trainer", GUIDE, re.S)
    assert listed is not None
    assert listed.group(1) == words[len(BATCH_KINDS)]
    assert sorted(re.findall(r'`"([a-z_]+)"`', listed.group(2))) == sorted(BATCH_KINDS)


def test_the_guides_pyproject_builds_with_setuptools_and_bounds_recsys():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    guide = tomllib.loads(_block("toml", "[build-system]"))
    shipped = tomllib.loads((ROOT / "plugins" / "recsys-vae" / "pyproject.toml").read_text())
    # the [tool.setuptools.*] tables need setuptools as the backend, as the shipped plugins say
    assert guide["build-system"] == shipped["build-system"]
    assert guide["project"]["dependencies"] == shipped["project"]["dependencies"]
    assert guide["project"]["dependencies"] == ["recsys>=0.1,<0.2"]


def test_the_guides_layout_has_the_package_init():
    tree = _block("text", "recsys-mymodel/")
    assert re.search(r"^    recsys_mymodel/\n        __init__\.py", tree, re.M), tree
    for name in ("pyproject.toml", "model.py", "mymodel.yaml"):
        assert name in tree
