"""The model registry: built-ins by decorator, plugins by the ``recsys.models`` entry point.

A plugin distribution declares, in its ``pyproject.toml``::

    [project.entry-points."recsys.models"]
    multvae = "recsys_vae.models:MultVAE"

and installing it is registering it (``docs/plugins.md`` is the guide). Entry points are read
on first use. A plugin is skipped, with a :class:`PluginWarning` when models are listed, and
refused with a :class:`~recsys.errors.ConfigError` saying why when it is asked for by name,
when

- it fails to import (the error's type, message and the plugin's file and line are given),
  or exits while importing (``sys.exit()`` raises :class:`SystemExit`);
- its target is not a :class:`~recsys.models.base.Recommender` subclass;
- it breaks the class-level contract (:func:`contract_problems`): its entry-point name is not
  the class's ``name``, its ``config_class`` is not a
  :class:`~recsys.models.base.ModelConfig` subclass or cannot be built from its defaults, or
  its ``batch_kind`` is not one the trainer has a sampler for.

A plugin name that collides with a built-in is ignored with a warning (built-ins win). A name
that more than one plugin entry point provides is a clash no installation order settles: it is
skipped with a warning when models are listed, and refused, naming every provider, when asked
for by name. ``RECSYS_DISABLE_PLUGIN_AUTOLOAD=1`` turns plugin loading off.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import traceback
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import get_args

from recsys.data.samplers import BatchKind
from recsys.errors import ConfigError
from recsys.models.base import ModelConfig, Recommender, config_defaults_problem

ENTRY_POINT_GROUP = "recsys.models"
_BUILTIN_MODULES = ("pop", "itemknn", "bpr", "lightgcn", "bm3", "twotower", "dnis")
_BUILTINS: dict[str, type[Recommender]] = {}
BATCH_KINDS: tuple[str, ...] = get_args(BatchKind)
"""The batch kinds a model may declare (the trainer has a sampler for each, or none)."""


class PluginWarning(UserWarning):
    """A plugin model is skipped: it failed to load, or it breaks the model contract."""


@dataclass(frozen=True)
class ModelInfo:
    """Where a registered model comes from."""

    name: str
    source: str  # "builtin" or the distribution name
    version: str
    target: str  # "module:Class"
    description: str


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator registering a built-in model under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name` to be registered")
    # the static part of the contract (the defaults are checked by the conformance tests:
    # building a config may look other models up, which cannot happen mid-import)
    problems = contract_problems(cls, check_defaults=False)
    if problems:
        raise TypeError(f"model {cls.__name__}: " + "; ".join(problems))
    if cls.name in _BUILTINS and _BUILTINS[cls.name] is not cls:
        raise ValueError(f"model name {cls.name!r} is already registered")
    _BUILTINS[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"recsys.models.{module}")


def plugin_autoload_disabled() -> bool:
    """Whether ``RECSYS_DISABLE_PLUGIN_AUTOLOAD`` turns plugin loading off (any value but
    empty or ``0``)."""
    return os.environ.get("RECSYS_DISABLE_PLUGIN_AUTOLOAD", "").strip() not in ("", "0")


def _plugin_entry_points() -> list[EntryPoint]:
    if plugin_autoload_disabled():
        return []
    return list(entry_points(group=ENTRY_POINT_GROUP))


_LINK = re.compile(r"`([^`<]*?)\s*<[^>]*>`_+")  # `text <url>`_ -> text
_ROLE = re.compile(r":[a-z]+:`~?([^`]*)`")  # :class:`~a.B` -> a.B, :math:`x` -> x
_LITERAL = re.compile(r"``([^`]*)``")


def _describe(cls: type, limit: int = 120) -> str:
    """One line for ``recsys models``: the docstring's first sentence as plain text (reST
    links, roles and literals unmarked), cut at a word before ``limit`` characters."""
    paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
    text = " ".join(paragraph.split())
    text = _LITERAL.sub(r"\1", _ROLE.sub(r"\1", _LINK.sub(r"\1", text)))
    text = re.split(r"(?<=\.)\s", text.replace("\\", ""), maxsplit=1)[0]
    if len(text) > limit:
        text = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:(") + "…"
    return text


def contract_problems(
    cls: type[Recommender], name: str | None = None, check_defaults: bool = True
) -> list[str]:
    """What in model class ``cls`` breaks the class-level contract (empty: nothing).

    ``name``, when given, is the name the model is registered under (a plugin's entry-point
    name), which must be the class's ``name``; ``check_defaults`` also builds
    ``cls.config_class()`` from its defaults.
    """
    problems = []
    if name is not None and cls.name != name:
        problems.append(
            f"the entry-point name {name!r} is not the class's name {cls.name!r} (runs, "
            "checkpoints and metrics record the class's name; make them equal)"
        )
    config_class = getattr(cls, "config_class", None)
    if not (isinstance(config_class, type) and issubclass(config_class, ModelConfig)):
        shown = getattr(config_class, "__qualname__", repr(config_class))
        problems.append(
            f"its config_class {shown} is not a subclass of recsys.models.base.ModelConfig "
            "(which rejects unknown keys and infinite or NaN values, and validates defaults)"
        )
    elif check_defaults:
        problem = config_defaults_problem(config_class)
        if problem:
            problems.append(problem)
    if cls.batch_kind not in BATCH_KINDS:
        problems.append(
            f"its batch_kind {cls.batch_kind!r} is not one of {', '.join(map(repr, BATCH_KINDS))}"
        )
    return problems


def _failure_site(exc: BaseException) -> str:
    """``file:line`` where an exception raised while importing a plugin comes from: the last
    traceback frame outside the import machinery (and this module); empty if none is."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    machinery = Path(importlib.__file__).parent
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<")
        and frame.filename != __file__
        and machinery not in Path(frame.filename).parents
    ]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""


@dataclass(frozen=True)
class _Loaded:
    """An entry point's class, or why it cannot be used."""

    cls: type[Recommender] | None
    reason: str = ""
    imported: bool = True  # False: the import failed; True with a reason: the class is refused


_CHECKED: dict[tuple[str, type], list[str]] = {}
"""Contract problems of classes already loaded, by (entry-point name, class)."""


def _failure_message(exc: BaseException) -> str:
    """The message of an exception raised while importing a plugin, on one line (for a
    :class:`SystemExit`, its message or exit status)."""
    if isinstance(exc, SystemExit) and not isinstance(exc.code, str):
        return f"exit status {exc.code if exc.code is not None else 0}"
    return " ".join(str(exc).split())


def _try_entry_point(ep: EntryPoint) -> _Loaded:
    try:
        cls = ep.load()
    # a broken plugin must not take the CLI down, nor one calling sys.exit() at import (a
    # KeyboardInterrupt is the user's and goes through)
    except (Exception, SystemExit) as exc:
        message = _failure_message(exc)
        site = _failure_site(exc)
        reason = f"{type(exc).__name__}: {message}" + (f" (at {site})" if site else "")
        return _Loaded(None, reason, imported=False)
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        return _Loaded(None, "it is not a Recommender subclass")
    key = (ep.name, cls)
    if key not in _CHECKED:
        _CHECKED[key] = contract_problems(cls, ep.name)
    if _CHECKED[key]:
        return _Loaded(None, "; ".join(_CHECKED[key]))
    return _Loaded(cls)


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{ep.value}, from {dist.name} {dist.version}" if dist else ep.value


def _by_name(eps: list[EntryPoint]) -> dict[str, list[EntryPoint]]:
    """Plugin entry points grouped by name, the names sorted, each group's entry points sorted
    by distribution and target (so a clash reads the same whatever the discovery order)."""
    groups: dict[str, list[EntryPoint]] = {}
    for ep in eps:
        groups.setdefault(ep.name, []).append(ep)
    return {
        name: sorted(group, key=lambda ep: (ep.dist.name if ep.dist else "", ep.value))
        for name, group in sorted(groups.items())
    }


def _clash(eps: list[EntryPoint]) -> str:
    """Why a plugin model name that more than one entry point ``eps`` provides is refused:
    each provider's target, distribution and version."""
    providers = "; ".join(_origin(ep) for ep in eps)
    return (
        f"{len(eps)} plugin entry points provide it ({providers}) and none takes precedence "
        "(uninstall all but one, or rename the model in the others)"
    )


def _warn(message: str) -> None:
    """A :class:`PluginWarning` attributed to the first caller outside this module."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename == __file__:
        level, frame = level + 1, frame.f_back
    warnings.warn(message, PluginWarning, stacklevel=level)


def _load_entry_point(ep: EntryPoint) -> type[Recommender] | None:
    """The class of ``ep``, or None with a :class:`PluginWarning` saying why it is skipped."""
    loaded = _try_entry_point(ep)
    if loaded.cls is None and not loaded.imported:
        _warn(f"could not load plugin model {ep.name!r} ({_origin(ep)}): {loaded.reason}; skipped")
    elif loaded.cls is None:
        _warn(f"plugin model {ep.name!r} ({_origin(ep)}) is refused: {loaded.reason}; skipped")
    return loaded.cls


def _models(quiet: bool = False) -> list[ModelInfo]:
    _load_builtins()
    infos = [
        ModelInfo(name, "builtin", "", f"{cls.__module__}:{cls.__name__}", _describe(cls))
        for name, cls in sorted(_BUILTINS.items())
    ]
    for name, eps in _by_name(_plugin_entry_points()).items():
        if name in _BUILTINS:
            if not quiet:
                for ep in eps:
                    _warn(
                        f"plugin model {name!r} ({_origin(ep)}) collides with a built-in; ignored"
                    )
            continue
        if len(eps) > 1:
            if not quiet:
                _warn(f"plugin model {name!r} is refused: {_clash(eps)}; skipped")
            continue
        ep = eps[0]
        cls = _try_entry_point(ep).cls if quiet else _load_entry_point(ep)
        if cls is None:
            continue
        dist = ep.dist
        infos.append(
            ModelInfo(
                ep.name,
                dist.name if dist else "?",
                dist.version if dist else "?",
                ep.value,
                _describe(cls),
            )
        )
    return infos


def list_models() -> list[ModelInfo]:
    """Every available model, built-ins first, then plugins, each sorted by name (plugins are
    imported to check; a plugin that cannot be used, or whose name more than one plugin
    provides, is skipped with a :class:`PluginWarning` saying why)."""
    return _models()


def get_model_class(name: str, key: str | None = "model.name") -> type[Recommender]:
    """The model class registered as ``name``.

    Raises:
        ConfigError: ``name`` is not registered (the message lists the known models, and the
            config ``key`` that named it, when one did), it is a plugin model that cannot be
            used (the message says why: the import error with the plugin's file and line, or
            the broken part of the contract), or more than one plugin provides it (the message
            names each one's target, distribution and version).
    """
    _load_builtins()
    if name in _BUILTINS:
        return _BUILTINS[name]
    where = f" (key {key})" if key else ""
    eps = _by_name([ep for ep in _plugin_entry_points() if ep.name == name]).get(name, [])
    if len(eps) > 1:
        raise ConfigError(f"model {name!r}{where} is refused: {_clash(eps)}")
    if eps:
        loaded = _try_entry_point(eps[0])
        if loaded.cls is not None:
            return loaded.cls
        what = "is refused" if loaded.imported else "could not be loaded"
        raise ConfigError(
            f"model {name!r}{where} is a plugin model ({_origin(eps[0])}) that {what}: "
            + loaded.reason
        )
    known = ", ".join(info.name for info in _models(quiet=True))
    raise ConfigError(f"unknown model {name!r}{where}; available: {known}")


def create_model(name: str, **config: object) -> Recommender:
    """Instantiate model ``name`` with hyper-parameters ``config`` (validated)."""
    return get_model_class(name)(**config)
