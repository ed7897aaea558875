"""``recsys models``: list built-in and plugin models with their hyper-parameters."""

from __future__ import annotations

import click

from recsys.jsonio import dumps_json


@click.command()
@click.option(
    "--params", is_flag=True, help="Also show each model's hyper-parameters and defaults."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(params: bool, as_json: bool) -> None:
    """List the models that `recsys train --model NAME` accepts."""
    from recsys.models.registry import get_model_class, list_models

    infos = list_models()
    if as_json:
        out = []
        for info in infos:
            cls = get_model_class(info.name)
            out.append(
                {
                    "name": info.name,
                    "source": info.source,
                    "version": info.version,
                    "target": info.target,
                    "batch_kind": cls.batch_kind,
                    "params": cls.config_class().model_dump(mode="json"),
                }
            )
        click.echo(dumps_json(out, indent=2))
        return
    width = max(len(i.name) for i in infos)
    for info in infos:
        source = "builtin" if info.source == "builtin" else f"{info.source} {info.version}"
        click.echo(f"{info.name.ljust(width)}  [{source}]  {info.description}")
        if params:
            cls = get_model_class(info.name)
            for key, value in cls.config_class().model_dump(mode="json").items():
                click.echo(f"{'':{width}}    {key} = {value!r}")
