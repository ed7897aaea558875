"""The registry refuses plugin models that break the model contract, and says why.

Plugins come from a fake installed distribution (a module and its dist-info on ``sys.path``),
as in ``tests/cli/test_plugins.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from recsys.cli import main
from recsys.errors import ConfigError
from recsys.models.base import ModelConfig, Recommender
from recsys.models.registry import PluginWarning, get_model_class, list_models, register

PLUGIN = textwrap.dedent('''
    """Plugin models, one correct and the others each breaking one rule."""
    from pydantic import BaseModel, Field

    from recsys.models.base import ModelConfig
    from recsys.models.bpr import BPR, BPRConfig


    class Good(BPR):
        """A correct plugin model."""

        name = "cgood"


    class PlainConfig(BaseModel):
        embedding_size: int = Field(16, gt=0)


    class PlainCfg(BPR):
        """Its config is a plain pydantic model."""

        name = "cplain"
        config_class = PlainConfig


    class BadDefaultConfig(BPRConfig):
        embedding_size: int = Field(0, gt=0)


    class BadDefault(BPR):
        """A default that breaks its own constraint."""

        name = "cbaddefault"
        config_class = BadDefaultConfig


    class NoDefaultConfig(ModelConfig):
        embedding_size: int = Field(gt=0)


    class NoDefault(BPR):
        """A required hyper-parameter."""

        name = "cnodefault"
        config_class = NoDefaultConfig


    class BadKind(BPR):
        """An unknown batch kind."""

        name = "cbadkind"
        batch_kind = "listwise"


    class NotRec:
        """Not a model."""
''')

IMPORT_ERROR = textwrap.dedent("""\
    '''A plugin module whose import fails.'''

    import recsys_contract_missing_dependency  # noqa: F401
""")

ENTRY_POINTS = {
    "cgood": "cplug:Good",
    "cplain": "cplug:PlainCfg",
    "cbaddefault": "cplug:BadDefault",
    "cnodefault": "cplug:NoDefault",
    "cbadkind": "cplug:BadKind",
    "calias": "cplug:Good",
    "cnotrec": "cplug:NotRec",
    "cmissing": "cplug:DoesNotExist",
    "cimporterr": "cplug_importerr:Model",
}
BROKEN = sorted(set(ENTRY_POINTS) - {"cgood"})

# what get_model_class's error (and the listing's warning) says for each broken entry point
REASONS = {
    "cplain": ["is refused", "config_class PlainConfig is not a subclass", "ModelConfig"],
    "cbaddefault": [
        "is refused",
        "BadDefaultConfig cannot be built from its defaults",
        "the default embedding_size=0 is invalid",
        "not in the user's settings",
    ],
    "cnodefault": ["is refused", "embedding_size has no default"],
    "cbadkind": ["is refused", "batch_kind 'listwise' is not one of", "'pairwise'"],
    "calias": ["is refused", "entry-point name 'calias' is not the class's name 'cgood'"],
    "cnotrec": ["is refused", "not a Recommender subclass"],
    "cmissing": ["could not", "AttributeError", "DoesNotExist"],
    "cimporterr": [
        "could not",
        "ModuleNotFoundError: No module named 'recsys_contract_missing_dependency'",
        "cplug_importerr.py:3",
    ],
}


@pytest.fixture
def contract_plugins(tmp_path, monkeypatch):
    """An installed distribution ``cplug`` 1.2 whose entry points are ``ENTRY_POINTS``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "cplug.py").write_text(PLUGIN)
    (site / "cplug_importerr.py").write_text(IMPORT_ERROR)
    info = site / "cplug-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cplug\nVersion: 1.2\n")
    lines = [f"{name} = {target}" for name, target in ENTRY_POINTS.items()]
    (info / "entry_points.txt").write_text(
        "[recsys.models]\n" + "\n".join([*lines, "bpr = cplug:Good"]) + "\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    for module in ("cplug", "cplug_importerr"):
        sys.modules.pop(module, None)


def test_listing_skips_each_broken_plugin_with_one_warning_saying_why(contract_plugins):
    with pytest.warns(PluginWarning) as record:
        names = {info.name for info in list_models()}
    assert "cgood" in names
    assert not names & set(BROKEN)
    messages = [str(w.message) for w in record if issubclass(w.category, PluginWarning)]
    for name in BROKEN:
        mine = [m for m in messages if f"plugin model {name!r} (" in m]
        assert len(mine) == 1, (name, messages)
        assert "cplug 1.2" in mine[0] and mine[0].endswith("; skipped")
        for text in REASONS[name]:
            assert text in mine[0], (text, mine[0])
    assert any("'bpr'" in m and "collides with a built-in" in m for m in messages)
    # warnings point at the caller, not at the registry's internals
    assert all(Path(w.filename).name == Path(__file__).name for w in record)


@pytest.mark.parametrize("name", BROKEN)
def test_asking_for_a_broken_plugin_says_why_not_unknown(contract_plugins, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one clear error, no warnings on the way
        with pytest.raises(ConfigError) as info:
            get_model_class(name)
    message = str(info.value)
    assert "unknown model" not in message
    assert message.startswith(f"model {name!r} (key model.name) is a plugin model (")
    assert f"{ENTRY_POINTS[name]}, from cplug 1.2" in message
    failed_import = name in ("cmissing", "cimporterr")
    assert ("that could not be loaded: " if failed_import else "that is refused: ") in message
    for text in REASONS[name]:
        assert text in message, (text, message)


def test_unknown_model_lists_only_usable_models_without_warnings(contract_plugins):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConfigError, match="unknown model 'nosuch'") as info:
            get_model_class("nosuch")
    assert "cgood" in str(info.value) and "cplain" not in str(info.value)
    assert get_model_class("cgood").__name__ == "Good"


def test_models_command_lists_params_and_json_despite_broken_plugins(contract_plugins, capsys):
    with pytest.warns(PluginWarning):
        assert main(["models", "--params"]) == 0
    out = capsys.readouterr().out
    assert "cgood" in out and "embedding_size = 64" in out
    assert not any(name in out for name in BROKEN)
    with pytest.warns(PluginWarning):
        assert main(["models", "--json"]) == 0
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert models["cgood"]["params"]["embedding_size"] == 64
    assert models["cgood"]["batch_kind"] == "pairwise"


class _RequiredConfig(ModelConfig):
    size: int


class _Unlistable(Recommender):
    """A model whose config cannot be built from defaults, slipped past the registry."""

    name = "zzunlistable"
    config_class = _RequiredConfig


def test_models_command_survives_a_model_whose_params_cannot_be_listed(monkeypatch, capsys):
    from recsys.models import registry

    registry._load_builtins()
    monkeypatch.setitem(registry._BUILTINS, "zzunlistable", _Unlistable)
    with pytest.warns(PluginWarning, match="'zzunlistable': cannot list its hyper-parameters"):
        assert main(["models", "--params"]) == 0
    out = capsys.readouterr().out
    assert "zzunlistable" in out and "bpr" in out
    with pytest.warns(PluginWarning, match="zzunlistable"):
        assert main(["models", "--json"]) == 0
    names = {m["name"] for m in json.loads(capsys.readouterr().out)}
    assert "bpr" in names and "zzunlistable" not in names


def test_models_command_shows_one_line_per_skipped_plugin(contract_plugins, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(contract_plugins), os.environ.get("PYTHONPATH", "")]),
        "RECSYS_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("RECSYS_DISABLE_PLUGIN_AUTOLOAD", None)
    done = subprocess.run(
        [sys.executable, "-m", "recsys", "models"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "cgood" in done.stdout
    lines = done.stderr.splitlines()
    for name in BROKEN:
        assert sum(f"plugin model {name!r} (" in line for line in lines) == 1, done.stderr
    # only those lines: no Python warning header (file:line: Category:) or source line
    assert all(line.startswith("warning: ") for line in lines), done.stderr
    assert "Warning" not in done.stderr
    assert len(lines) == len(BROKEN) + 1  # and the collision with the built-in bpr


def test_builtin_registration_checks_the_static_contract():
    class PlainConfig:
        pass

    class Plain(Recommender):
        name = "zzplain"
        config_class = PlainConfig  # type: ignore[assignment]

    class Kind(Recommender):
        name = "zzkind"
        batch_kind = "listwise"  # type: ignore[assignment]

    with pytest.raises(TypeError, match="not a subclass of recsys.models.base.ModelConfig"):
        register(Plain)
    with pytest.raises(TypeError, match="batch_kind 'listwise'"):
        register(Kind)


def test_model_config_validates_its_defaults():
    from pydantic import Field, ValidationError

    class Config(ModelConfig):
        embedding_size: int = Field(0, gt=0)

    with pytest.raises(ValidationError, match="embedding_size"):
        Config()
    assert Config(embedding_size=3).embedding_size == 3


def test_a_bad_default_is_blamed_on_the_model_not_the_user():
    from pydantic import Field

    from recsys.models.base import build_config

    class Config(ModelConfig):
        embedding_size: int = Field(0, gt=0)
        reg_weight: float = Field(0.0, ge=0.0)

    with pytest.raises(ConfigError, match="the default embedding_size=0 is invalid") as info:
        build_config(Config, {"reg_weight": 0.1})
    assert "a bug in the model's code, not in the user's settings" in str(info.value)
    # a bad value the user gave is the user's
    with pytest.raises(ConfigError, match=r"^model\.reg_weight: ") as info:
        build_config(Config, {"embedding_size": 3, "reg_weight": -1.0})
    assert "default" not in str(info.value)
    assert build_config(Config, {"embedding_size": 3}).embedding_size == 3
