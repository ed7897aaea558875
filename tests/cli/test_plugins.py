"""A model from another distribution registers through the `recsys.models` entry point."""

from __future__ import annotations

import json
import textwrap

import pytest

from recsys.cli import main
from recsys.models.registry import get_model_class, list_models

PLUGIN_MODULE = textwrap.dedent('''
    """A plugin model: BPR under another name, as a third-party package would ship it."""
    from recsys.models.bpr import BPR

    class ToyMF(BPR):
        """Toy matrix factorisation from a plugin distribution."""

        name = "toymf"
''')


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """An installed distribution `toyplug` 0.3, made of a module and its dist-info."""
    site = tmp_path / "site"
    (site / "toyplug").mkdir(parents=True)
    (site / "toyplug" / "__init__.py").write_text(PLUGIN_MODULE)
    info = site / "toyplug-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(
        "[recsys.models]\ntoymf = toyplug:ToyMF\nbroken = toyplug:DoesNotExist\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_plugin_model_is_listed_and_trained(fake_distribution, tmp_path, capsys):
    with pytest.warns(UserWarning, match="could not load plugin model 'broken'"):
        infos = {info.name: info for info in list_models()}
    assert infos["toymf"].source == "toyplug" and infos["toymf"].version == "0.3"
    assert get_model_class("toymf").__name__ == "ToyMF"

    with pytest.warns(UserWarning, match="broken"):
        assert main(["models"]) == 0
    assert "toymf" in capsys.readouterr().out

    code = main(
        [
            "train",
            "--dataset",
            "synthetic-120x80x2400",
            "--model",
            "toymf",
            "-o",
            str(tmp_path / "runs"),
            "--no-tracking",
            "--quiet",
            "--set",
            "train.epochs=2",
            "--set",
            "model.embedding_size=8",
        ]
    )
    assert code == 0
    run = next((tmp_path / "runs").glob("*/metrics.json")).parent
    assert json.loads((run / "metrics.json").read_text())["model"] == "toymf"


def test_autoload_kill_switch(fake_distribution, monkeypatch):
    monkeypatch.setenv("RECSYS_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "toymf" not in {info.name for info in list_models()}
