"""``recsys models``: list built-in and plugin models with their hyper-parameters."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import click

from recsys.jsonio import dumps_json


@contextlib.contextmanager
def _one_line_plugin_warnings() -> Iterator[None]:
    """Show a skipped plugin as one ``warning: ...`` line on stderr, not as a Python warning
    with this module's file, line and source (the plugin's own location is in the text).
    Other warnings, and warnings recorded by a caller (pytest), are left as they are."""
    from recsys.models.registry import PluginWarning

    original = warnings.formatwarning

    def formatwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        line: str | None = None,
    ) -> str:
        if issubclass(category, PluginWarning):
            return f"warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning
    try:
        yield
    finally:
        warnings.formatwarning = original


def _params(name: str) -> tuple[str, dict[str, Any]] | tuple[str, None]:
    """The model's batch kind and default hyper-parameters; on a failure, a warning and
    None (one model must not take the listing down)."""
    from recsys.models.registry import PluginWarning, get_model_class

    try:
        cls = get_model_class(name)
        return cls.batch_kind, cls.config_class().model_dump(mode="json")
    except Exception as exc:
        warnings.warn(
            f"model {name!r}: cannot list its hyper-parameters: {type(exc).__name__}: "
            + " ".join(str(exc).split()),
            PluginWarning,
            stacklevel=2,
        )
        return "", None


@click.command()
@click.option(
    "--params", is_flag=True, help="Also show each model's hyper-parameters and defaults."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(params: bool, as_json: bool) -> None:
    """List the models that `recsys train --model NAME` accepts."""
    with _one_line_plugin_warnings():
        _list(params, as_json)


def _list(params: bool, as_json: bool) -> None:
    from recsys.models.registry import list_models

    infos = list_models()
    if as_json:
        out = []
        for info in infos:
            batch_kind, values = _params(info.name)
            if values is None:
                continue
            out.append(
                {
                    "name": info.name,
                    "source": info.source,
                    "version": info.version,
                    "target": info.target,
                    "batch_kind": batch_kind,
                    "params": values,
                }
            )
        click.echo(dumps_json(out, indent=2))
        return
    width = max(len(i.name) for i in infos)
    for info in infos:
        source = "builtin" if info.source == "builtin" else f"{info.source} {info.version}"
        click.echo(f"{info.name.ljust(width)}  [{source}]  {info.description}")
        if params:
            _, values = _params(info.name)
            for key, value in (values or {}).items():
                click.echo(f"{'':{width}}    {key} = {value!r}")
