"""Default search spaces for every registered model, plugins included.

Built-in models ship theirs in ``tune/spaces/<model>.yaml``; a plugin ships ``spaces/<model>.yaml``
inside the package of its model's class, and ``recsys tune`` picks it up without ``--space``.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import logging
from pathlib import Path

import pytest

from recsys.cli import main
from recsys.config import build_run_config
from recsys.models.registry import get_model_class, list_models
from recsys.train.trainer import TrainConfig
from recsys.tuning.space import load_space
from tests.tuning.conftest import DATA, run_tune_cli

REPO = Path(__file__).resolve().parents[2]
BUILTIN_SPACES = REPO / "tune" / "spaces"

NO_SPACE = {
    "pop": "no hyper-parameters",
    "diffrec_student": "needs a trained teacher (model.teacher), which no default can name",
}
"""Registered models that ship no default space, and why."""

MODELS = sorted(info.name for info in list_models())
PLUGIN_MODELS = sorted(info.name for info in list_models() if info.source != "builtin")


def _package_space(model: str) -> Path:
    """``spaces/<model>.yaml`` next to the ``__init__`` of the package of the model's class."""
    module = importlib.import_module(get_model_class(model).__module__)
    package = module.__name__ if hasattr(module, "__path__") else module.__package__
    init = importlib.import_module(package).__file__
    return Path(init).parent / "spaces" / f"{model}.yaml"


def _shipped_space(model: str) -> Path:
    builtin = BUILTIN_SPACES / f"{model}.yaml"
    return builtin if builtin.is_file() else _package_space(model)


def _base(model: str) -> dict:
    return build_run_config(None, [], model={"name": model}).model_dump(mode="json")


def test_every_registered_model_with_hyper_parameters_ships_a_space():
    missing = [
        model
        for model in MODELS
        if model not in NO_SPACE
        and get_model_class(model).config_class.model_fields
        and not _shipped_space(model).is_file()
    ]
    assert not missing, f"no default search space for {missing}"
    # the exceptions are real: pop has nothing to tune
    assert not get_model_class("pop").config_class.model_fields


PLUGIN_SPACES = [m for m in PLUGIN_MODELS if m not in NO_SPACE]
"""The built-in models' spaces are checked in test_space.py."""


@pytest.mark.parametrize("model", PLUGIN_SPACES)
def test_plugin_spaces_live_in_the_model_package(model):
    assert not (BUILTIN_SPACES / f"{model}.yaml").exists()
    assert _package_space(model).is_file()


@pytest.mark.parametrize("model", PLUGIN_SPACES)
def test_every_plugin_space_is_valid_for_its_model(model):
    path = _package_space(model)
    # checked against the model's defaults: every fixed value and every candidate of every
    # sampled key makes a valid run config, and every model key is a hyper-parameter
    space = load_space(path, _base(model))
    assert space.params
    hyper = get_model_class(model).config_class.model_fields
    for key in [*space.params, *space.fixed]:
        section, name = key.split(".", 1)
        assert section in ("model", "train"), f"{path}: {key}"
        fields = hyper if section == "model" else TrainConfig.model_fields
        assert name.split(".")[0] in fields, f"{path}: {key}"
    assert space.to_tune().keys() == space.params.keys()
    if get_model_class(model).batch_kind != "none":  # closed-form models run one step
        assert "train.epochs" in space.fixed, f"{path}: train.epochs is not fixed for ASHA"


@pytest.mark.parametrize(
    "dist", sorted(p.parent.name for p in (REPO / "plugins").glob("*/pyproject.toml"))
)
def test_plugin_wheels_carry_their_spaces(dist):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "plugins" / dist / "pyproject.toml").read_text())
    package_data = project["tool"]["setuptools"].get("package-data", {})
    spaces = sorted((REPO / "plugins" / dist).glob("*/spaces/*.yaml"))
    assert spaces, f"{dist} ships no default search space"
    for space in spaces:
        package = space.parent.parent.name
        relative = f"spaces/{space.name}"
        patterns = package_data.get(package, [])
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), (
            f"{dist}: {relative} is not in [tool.setuptools.package-data] {package}"
        )


def test_the_error_without_a_space_names_both_places(tmp_path, capsys):
    pytest.importorskip("recsys_diffusion")
    code = main(
        ["tune", "--model", "diffrec_student", "--dataset", DATA, "-o", str(tmp_path / "runs")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "no --space given" in err
    assert "diffrec_student.yaml" in err
    assert str(Path("tune") / "spaces" / "diffrec_student.yaml") in err.replace("\n", "")
    assert str(Path("recsys_diffusion") / "spaces" / "diffrec_student.yaml") in err.replace(
        "\n", ""
    )


def test_help_says_where_default_spaces_come_from(capsys):
    assert main(["tune", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "tune/spaces/<model>.yaml" in out
    assert "spaces/<model>.yaml in a plugin model's package" in out


def test_tune_picks_the_plugin_space_without_space(local_ray, tmp_path, caplog):
    pytest.importorskip("recsys_vae")
    expected = _package_space("multvae")
    with caplog.at_level(logging.INFO, logger="recsys"):
        code, stdout = run_tune_cli(
            "--model", "multvae", "--dataset", "synthetic-120x80x2400", "--num-samples", "2",
            "--set", "train.epochs=2", "--grace-period", "1", "--cpus-per-trial", "1",
            "--no-tracking", "--quiet", "-o", str(tmp_path / "runs"), "--name", "multvae",
        )  # fmt: skip
    assert code == 0, stdout
    assert str(expected) in caplog.text
    folder = tmp_path / "runs" / "multvae"
    assert json.loads((folder / "tune.json").read_text())["space_source"] == str(expected)
    header = (folder / "space.yaml").read_text().splitlines()[0]
    assert header == f"# search space read from {expected}"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["best"] is not None
    assert "model.anneal_cap" in summary["best"]["params"]
