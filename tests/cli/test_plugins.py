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


def test_a_run_names_the_plugin_that_trained_it_when_its_model_is_gone(
    fake_distribution, tmp_path, capsys, caplog, monkeypatch
):
    """run.json records the model's distribution, version and target; a run folder whose
    plugin model is gone says which distribution to install (before: only "unknown model")."""
    args = ["train", "--dataset", "synthetic-120x80x2400", "--model", "toymf", "--no-tracking"]
    args += ["-o", str(tmp_path / "runs"), "--quiet", "--set", "train.epochs=1"]
    assert main([*args, "--set", "run_name=toy"]) == 0
    run = tmp_path / "runs" / "toy"
    record = json.loads((run / "run.json").read_text())
    assert record["model_source"] == {
        "distribution": "toyplug",
        "version": "0.3",
        "target": "toyplug:ToyMF",
    }
    info = fake_distribution / "toyplug-0.3.dist-info"

    # another version installed: used, with a warning
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 0.4\n")
    with caplog.at_level("WARNING", logger="recsys"):
        assert main(["recommend", str(run), "-u", "1", "-k", "2"]) == 0
    assert "was trained with toyplug 0.3; toyplug 0.4 is installed" in caplog.text
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 0.3\n")
    capsys.readouterr()

    # installed, but plugin loading is off
    monkeypatch.setenv("RECSYS_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'toymf'" in err
    assert "the run was trained with the plugin model 'toymf' (toyplug:ToyMF) from the " in err
    assert "distribution toyplug 0.3; plugin loading is off here " in err
    assert "(RECSYS_DISABLE_PLUGIN_AUTOLOAD is set): unset it" in err
    assert "pip install" not in err
    monkeypatch.delenv("RECSYS_DISABLE_PLUGIN_AUTOLOAD")

    # uninstalled: every command that loads the run names the distribution to install
    info.rename(fake_distribution / "toyplug-uninstalled")
    for command in (
        ["evaluate", str(run)],
        ["recommend", str(run), "-u", "1"],
        ["export", str(run), "-o", str(tmp_path / "out")],
        ["probe", str(run), "--no-tracking", "--quiet", "-o", str(tmp_path / "out")],
        ["train", "--resume", str(run)],
    ):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "from the distribution toyplug 0.3, which is not installed here: " in err, err
        assert "`pip install toyplug==0.3`" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
