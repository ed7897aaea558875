"""The model registry: built-ins by decorator, plugins by the ``recsys.models`` entry point.

A plugin distribution declares, in its ``pyproject.toml``::

    [project.entry-points."recsys.models"]
    multvae = "recsys_vae.models:MultVAE"

and installing it is registering it. Entry points are read on first use. A plugin that fails to
import is reported as a warning and skipped, a plugin name that collides with a built-in is
ignored with a warning (built-ins win), and ``RECSYS_DISABLE_PLUGIN_AUTOLOAD=1`` turns plugin
loading off.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from recsys.errors import ConfigError
from recsys.models.base import Recommender

ENTRY_POINT_GROUP = "recsys.models"
_BUILTIN_MODULES = ("pop", "itemknn", "bpr", "lightgcn", "bm3", "twotower", "dnis")
_BUILTINS: dict[str, type[Recommender]] = {}


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
    if cls.name in _BUILTINS and _BUILTINS[cls.name] is not cls:
        raise ValueError(f"model name {cls.name!r} is already registered")
    _BUILTINS[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"recsys.models.{module}")


def _plugin_entry_points() -> list[EntryPoint]:
    if os.environ.get("RECSYS_DISABLE_PLUGIN_AUTOLOAD", "").strip() not in ("", "0"):
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


def list_models() -> list[ModelInfo]:
    """Every available model, built-ins first, then plugins (which are imported to check)."""
    _load_builtins()
    infos = [
        ModelInfo(name, "builtin", "", f"{cls.__module__}:{cls.__name__}", _describe(cls))
        for name, cls in sorted(_BUILTINS.items())
    ]
    for ep in _plugin_entry_points():
        if ep.name in _BUILTINS:
            warnings.warn(
                f"plugin model {ep.name!r} ({ep.value}) collides with a built-in; ignored",
                stacklevel=2,
            )
            continue
        cls = _load_entry_point(ep)
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


def _load_entry_point(ep: EntryPoint) -> type[Recommender] | None:
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must not take the CLI down
        warnings.warn(f"could not load plugin model {ep.name!r} ({ep.value}): {exc}", stacklevel=3)
        return None
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        warnings.warn(
            f"plugin model {ep.name!r} ({ep.value}) is not a Recommender subclass; ignored",
            stacklevel=3,
        )
        return None
    return cls


def get_model_class(name: str, key: str | None = "model.name") -> type[Recommender]:
    """The model class registered as ``name``; an unknown name lists the known ones (and the
    config ``key`` that named it, when one did)."""
    _load_builtins()
    if name in _BUILTINS:
        return _BUILTINS[name]
    for ep in _plugin_entry_points():
        if ep.name == name:
            cls = _load_entry_point(ep)
            if cls is not None:
                return cls
    known = ", ".join(info.name for info in list_models())
    where = f" (key {key})" if key else ""
    raise ConfigError(f"unknown model {name!r}{where}; available: {known}")


def create_model(name: str, **config: object) -> Recommender:
    """Instantiate model ``name`` with hyper-parameters ``config`` (validated)."""
    return get_model_class(name)(**config)
