"""``recsys tune`` finds the default search space a plugin ships, also where
:mod:`importlib.resources` cannot place the plugin's package.

The plugin is a fake installed distribution (a package and its dist-info on ``sys.path``), as
in ``tests/cli/test_plugins.py``; its package has no ``__init__.py`` (an implicit namespace
package), as a plugin written from ``docs/plugins.md`` without one has.
"""

from __future__ import annotations

import importlib.resources
import sys
import textwrap

import pytest

from recsys.cli.tune import default_space, plugin_space

MODEL = textwrap.dedent('''
    """A plugin model in a namespace package."""
    from recsys.models.bpr import BPR


    class SpaceModel(BPR):
        """BPR with a shipped search space."""

        name = "cspacemodel"
''')

SPACE = "params:\n  model.embedding_size: {type: choice, values: [8, 16]}\n"


@pytest.fixture
def namespace_plugin(tmp_path, monkeypatch):
    """Distribution ``cspace`` 0.1: ``cspace_ns/model.py`` (no ``__init__.py``) and
    ``cspace_ns/spaces/cspacemodel.yaml``; yields that space's path."""
    site = tmp_path / "site"
    package = site / "cspace_ns"
    (package / "spaces").mkdir(parents=True)
    (package / "model.py").write_text(MODEL)
    (package / "spaces" / "cspacemodel.yaml").write_text(SPACE)
    info = site / "cspace-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cspace\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[recsys.models]\ncspacemodel = cspace_ns.model:SpaceModel\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("RECSYS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    yield package / "spaces" / "cspacemodel.yaml"
    for module in ("cspace_ns.model", "cspace_ns"):
        sys.modules.pop(module, None)


def test_the_space_shipped_in_a_namespace_package_is_found(namespace_plugin):
    assert plugin_space("cspacemodel") == namespace_plugin
    assert default_space("cspacemodel") == namespace_plugin


@pytest.mark.parametrize(
    "error",
    [
        # what Python 3.11 raises for an implicit namespace package under a setuptools
        # editable install (its path holds the editable finder's placeholder, not a folder)
        NotADirectoryError("MultiplexedPath only supports directories"),
        TypeError("not a package"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_the_space_is_found_next_to_the_module_where_resources_fail(
    namespace_plugin, monkeypatch, error
):
    def files(package: str) -> None:
        raise error

    monkeypatch.setattr(importlib.resources, "files", files)
    assert plugin_space("cspacemodel") == namespace_plugin
    assert default_space("cspacemodel") == namespace_plugin
