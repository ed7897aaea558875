"""Plugins that clash over a model name, plugins that exit at import, and the order plugins are
listed in.

Plugins come from fake installed distributions (a module and its dist-info on ``sys.path``),
as in ``tests/cli/test_plugins.py``.
"""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from recsys.cli import main
from recsys.errors import ConfigError
from recsys.models.registry import PluginWarning, get_model_class, list_models

CLASH_A = textwrap.dedent('''
    """One plugin's model named cdupe."""
    from recsys.models.bpr import BPR


    class Dupe(BPR):
        """BPR as cdupe."""

        name = "cdupe"


    class Zeta(BPR):
        """Listed last of this file's models, though declared first."""

        name = "czeta"


    class Alpha(BPR):
        """Listed first of this file's models, though declared last."""

        name = "calpha"
''')

CLASH_B = textwrap.dedent('''
    """Another plugin's model named cdupe."""
    from recsys.models.pop import Pop


    class Dupe(Pop):
        """Pop as cdupe."""

        name = "cdupe"
''')

EXITER = textwrap.dedent("""\
    '''A plugin module that exits while it is imported.'''
    import sys

    sys.exit("cexit_plug: this plugin needs a GPU")
""")

EXIT_STATUS = textwrap.dedent("""\
    '''A plugin module that exits with a status while it is imported.'''
    raise SystemExit(3)
""")

INTERRUPTED = textwrap.dedent("""\
    '''A plugin module interrupted (Ctrl-C) while it is imported.'''
    raise KeyboardInterrupt
""")

MODULES = ("cclash_a", "cclash_b", "cexit_plug", "cexit_status", "cinterrupted")


def _distribution(site: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = [f"{key} = {target}" for key, target in entry_points.items()]
    (info / "entry_points.txt").write_text("[recsys.models]\n" + "\n".join(lines) + "\n")


def _site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exiting: bool) -> Path:
    """Distribution ``cclash_a`` 1.0 (models ``czeta``, ``cdupe`` and ``calpha``, declared in
    that order) on ``sys.path``, with ``cclash_b`` 2.0, which also provides ``cdupe``, or
    (``exiting``) ``cexit`` 0.1, whose two models exit while imported."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "cclash_a.py").write_text(CLASH_A)
    _distribution(
        site,
        "cclash_a",
        "1.0",
        {"czeta": "cclash_a:Zeta", "cdupe": "cclash_a:Dupe", "calpha": "cclash_a:Alpha"},
    )
    if exiting:
        (site / "cexit_plug.py").write_text(EXITER)
        (site / "cexit_status.py").write_text(EXIT_STATUS)
        entry_points = {"cexit": "cexit_plug:Model", "cexitstatus": "cexit_status:Model"}
        _distribution(site, "cexit", "0.1", entry_points)
    else:
        (site / "cclash_b.py").write_text(CLASH_B)
        _distribution(site, "cclash_b", "2.0", {"cdupe": "cclash_b:Dupe"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("RECSYS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return site


@pytest.fixture
def clash_site(tmp_path, monkeypatch):
    """``cclash_a`` and ``cclash_b``, which both provide ``cdupe``."""
    yield _site(tmp_path, monkeypatch, exiting=False)
    for module in MODULES:
        sys.modules.pop(module, None)


@pytest.fixture
def exit_site(tmp_path, monkeypatch):
    """``cclash_a`` and ``cexit``, whose models exit while imported."""
    yield _site(tmp_path, monkeypatch, exiting=True)
    for module in MODULES:
        sys.modules.pop(module, None)


PROVIDERS = ["cclash_a:Dupe, from cclash_a 1.0", "cclash_b:Dupe, from cclash_b 2.0"]


def _plugin_warnings(record: pytest.WarningsRecorder) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, PluginWarning)]


# -- two plugins providing one name ----------------------------------------------------------
def test_a_name_two_plugins_provide_is_refused_naming_every_provider(clash_site):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one clear error, no warnings on the way
        with pytest.raises(ConfigError) as info:
            get_model_class("cdupe")
    message = str(info.value)
    assert message.startswith("model 'cdupe' (key model.name) is refused: 2 plugin entry points")
    for provider in PROVIDERS:
        assert provider in message, (provider, message)
    assert "uninstall all but one" in message
    # the config key that named it is the one named
    with pytest.raises(ConfigError, match=r"^model 'cdupe' \(key model\.base\) is refused"):
        get_model_class("cdupe", key="model.base")
    # the clash does not hide the distributions' other models
    assert get_model_class("calpha").__name__ == "Alpha"


def test_listing_skips_a_clashing_name_with_one_warning_naming_both(clash_site):
    with pytest.warns(PluginWarning) as record:
        infos = list_models()
    names = [info.name for info in infos]
    assert "cdupe" not in names and {"calpha", "czeta"} <= set(names)
    mine = [m for m in _plugin_warnings(record) if "'cdupe'" in m]
    assert len(mine) == 1, mine
    assert mine[0].startswith("plugin model 'cdupe' is refused: ")
    assert mine[0].endswith("; skipped")
    for provider in PROVIDERS:
        assert provider in mine[0], (provider, mine[0])


def test_models_command_warns_about_the_clash_and_train_refuses_it(clash_site, tmp_path, capsys):
    with pytest.warns(PluginWarning) as record:
        assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "calpha" in out and "cdupe" not in out
    assert any(all(p in m for p in PROVIDERS) for m in _plugin_warnings(record))
    code = main(
        [
            "train",
            "--dataset",
            "synthetic-120x80x2400",
            "--model",
            "cdupe",
            "-o",
            str(tmp_path / "runs"),
            "--no-tracking",
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'cdupe'" in err
    assert all(provider in err for provider in PROVIDERS), err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_plugin_named_like_a_builtin_still_loses_to_it(clash_site):
    (clash_site / "cclash_b-2.0.dist-info" / "entry_points.txt").write_text(
        "[recsys.models]\ncdupe = cclash_b:Dupe\npop = cclash_b:Dupe\n"
    )
    with pytest.warns(PluginWarning) as record:
        list_models()
    assert any(
        m == "plugin model 'pop' (cclash_b:Dupe, from cclash_b 2.0) collides with a built-in; "
        "ignored"
        for m in _plugin_warnings(record)
    )
    assert get_model_class("pop").__module__ == "recsys.models.pop"


# -- plugins listed by name -------------------------------------------------------------------
def test_plugin_models_are_listed_sorted_by_name(clash_site):
    with pytest.warns(PluginWarning):
        infos = list_models()
    builtins = [info.name for info in infos if info.source == "builtin"]
    plugins = [info.name for info in infos if info.source != "builtin"]
    assert [info.name for info in infos] == builtins + plugins  # built-ins first
    assert builtins == sorted(builtins)
    assert plugins == sorted(plugins)
    assert plugins.index("calpha") < plugins.index("czeta")  # declared the other way round


def test_unknown_model_lists_the_available_ones_sorted(clash_site):
    with pytest.raises(ConfigError, match="unknown model 'nosuch'") as info:
        get_model_class("nosuch")
    available = str(info.value).split("; available: ")[1].split(", ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        builtins = [i.name for i in list_models() if i.source == "builtin"]
    assert available[: len(builtins)] == builtins
    plugins = available[len(builtins) :]
    assert plugins == sorted(plugins) and "calpha" in plugins


# -- a plugin that exits while imported -------------------------------------------------------
def test_a_plugin_exiting_at_import_is_skipped_with_a_warning(exit_site):
    with pytest.warns(PluginWarning) as record:
        names = {info.name for info in list_models()}
    assert "calpha" in names and "cexit" not in names and "cexitstatus" not in names
    messages = _plugin_warnings(record)
    (exit_message,) = [m for m in messages if "plugin model 'cexit' (" in m]
    assert exit_message.startswith("could not load plugin model 'cexit' (cexit_plug:Model, ")
    assert "from cexit 0.1" in exit_message
    assert "SystemExit: cexit_plug: this plugin needs a GPU" in exit_message
    assert "cexit_plug.py:4" in exit_message
    (status_message,) = [m for m in messages if "plugin model 'cexitstatus' (" in m]
    assert "SystemExit: exit status 3" in status_message


def test_asking_for_a_plugin_exiting_at_import_is_one_config_error(exit_site):
    with pytest.raises(ConfigError) as info:
        get_model_class("cexit")
    message = str(info.value)
    assert message.startswith("model 'cexit' (key model.name) is a plugin model (cexit_plug:Model")
    assert "that could not be loaded: SystemExit: cexit_plug: this plugin needs a GPU" in message


def test_models_command_survives_a_plugin_exiting_at_import(exit_site, capsys):
    with pytest.warns(PluginWarning) as record:
        assert main(["models", "--json"]) == 0
    assert any("'cexit'" in m and "SystemExit" in m for m in _plugin_warnings(record))
    out = capsys.readouterr().out
    assert '"name": "calpha"' in out and '"name": "cexit"' not in out


def test_an_interrupt_while_importing_a_plugin_is_not_swallowed(exit_site):
    (exit_site / "cinterrupted.py").write_text(INTERRUPTED)
    (exit_site / "cexit-0.1.dist-info" / "entry_points.txt").write_text(
        "[recsys.models]\ncinterrupted = cinterrupted:Model\n"
    )
    with pytest.raises(KeyboardInterrupt):
        get_model_class("cinterrupted")
