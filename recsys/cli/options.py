"""Options shared by several ``recsys`` commands, so each is spelled (and checked) once.

Each factory returns a decorator; the help text can be specialised per command while the
flags, types and parameter names stay the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable)


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def config_option(
    help: str = "YAML run config (sections data, split, model, train, eval, tracking).",
) -> Callable[[F], F]:
    """``-c/--config PATH`` as ``config_path``."""
    return click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), help=help)


def dataset_options(func: F) -> F:
    """``-d/--dataset NAME`` and ``--data-path PATH``."""
    return _stack(
        click.option("-d", "--dataset", help="Dataset card name (see `recsys data list`)."),
        click.option(
            "--data-path",
            type=click.Path(path_type=Path),
            help="Local data files instead of the card's source.",
        ),
    )(func)


def data_section(dataset: str | None, data_path: Path | None) -> dict[str, str] | None:
    """The ``data`` config section ``-d/--dataset`` and ``--data-path`` stand for (None if
    neither was given, so a config file's section is kept)."""
    section = {}
    if dataset:
        section["name"] = dataset
    if data_path:
        section["path"] = str(data_path)
    return section or None


def set_option(
    help: str = "Override a config key, e.g. --set train.learning_rate=0.01 (repeatable).",
) -> Callable[[F], F]:
    """``-s/--set KEY=VALUE`` (repeatable) as ``overrides``."""
    return click.option("-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE", help=help)


def output_dir_option(
    help: str = "Where run folders go (default: runs).",
    file_okay: bool = True,
) -> Callable[[F], F]:
    """``-o/--output-dir PATH``."""
    return click.option(
        "-o", "--output-dir", type=click.Path(path_type=Path, file_okay=file_okay), help=help
    )


def tracking_options(
    uri_help: str = "MLflow tracking URI (default: sqlite in the output dir).",
) -> Callable[[F], F]:
    """``--tracking-uri URI`` and ``--no-tracking``."""
    return _stack(
        click.option("--tracking-uri", help=uri_help),
        click.option("--no-tracking", is_flag=True, help="Do not log to MLflow."),
    )


def device_option(
    help: str = "cpu, cuda or cuda:N (sets train.device).",
) -> Callable[[F], F]:
    """``--device cpu|cuda|cuda:N``."""
    return click.option("--device", help=help)


def quiet_option(help: str = "No progress bars.") -> Callable[[F], F]:
    """``--quiet``."""
    return click.option("--quiet", is_flag=True, help=help)


def run_overrides(
    overrides: tuple[str, ...],
    *,
    tracking_uri: str | None = None,
    no_tracking: bool = False,
    quiet: bool = False,
    device: str | None = None,
) -> list[str]:
    """``--set`` overrides followed by the config keys the shared flags stand for."""
    extra = list(overrides)
    if tracking_uri:
        extra.append(f"tracking.uri={tracking_uri}")
    if no_tracking:
        extra.append("tracking.enabled=false")
    if quiet:
        extra.append("train.progress=false")
    if device:
        extra.append(f"train.device={device}")
    return extra
