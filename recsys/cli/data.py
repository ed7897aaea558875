"""``recsys data list|prepare|stats``."""

from __future__ import annotations

from pathlib import Path

import click

from recsys.jsonio import dumps_json


@click.group()
def data() -> None:
    """Dataset cards, downloads and statistics."""


@data.command("list")
def list_() -> None:
    """List the dataset cards (name, format, description)."""
    from recsys.data.catalog import list_cards

    cards = list_cards()
    width = max(len(c.name) for c in cards)
    for card in cards:
        click.echo(f"{card.name.ljust(width)}  {card.format:<9}  {card.description}")


@data.command()
@click.argument("name")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Cache folder (default: $RECSYS_DATA_DIR or ~/.cache/recsys/datasets).",
)
def prepare(name: str, cache_dir: Path | None) -> None:
    """Download (with checksum checks) and load dataset NAME, then print where it lives."""
    from recsys.data.catalog import DataConfig, fetch, get_card, load_dataset
    from recsys.data.synthetic import parse_synthetic_name

    if parse_synthetic_name(name) is not None:
        raise click.UsageError(
            f"{name!r} is generated on the fly, so there is nothing to download or prepare; "
            f"`recsys data stats {name}` shows it"
        )
    card = get_card(name)
    folder = fetch(card, cache_dir)
    ds = load_dataset(DataConfig(name=name, cache_dir=cache_dir))
    click.echo(f"{ds!r}")
    click.echo(f"files: {folder}")


@data.command()
@click.argument("name", required=False)
@click.option("--data-path", type=click.Path(path_type=Path), help="Local files for the dataset.")
@click.option(
    "-s",
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a data key, e.g. --set rating_threshold=4 (or data.rating_threshold=4).",
)
@click.option("--json", "as_json", is_flag=True)
def stats(
    name: str | None, data_path: Path | None, overrides: tuple[str, ...], as_json: bool
) -> None:
    """Sizes, density and interactions per user/item of a dataset after preprocessing.

    NAME is a dataset card (default ml-100k); with --data-path and no NAME the files are
    their own dataset, named after the file or folder.
    """
    from recsys.config import apply_overrides, validate
    from recsys.data.catalog import DataConfig, load_dataset

    values = {
        **({"name": name} if name else {}),
        **({"path": str(data_path)} if data_path else {}),
    }
    # the keys of a run config's data section, with or without their "data." prefix
    keys = [text.removeprefix("data.") for text in overrides]
    cfg = validate(DataConfig, apply_overrides(values, keys), prefix="data")
    ds = load_dataset(cfg)
    numbers = ds.stats()
    if as_json:
        click.echo(dumps_json(numbers, indent=2))
        return
    width = max(len(k) for k in numbers)
    click.echo(f"{ds!r}")
    for key, value in numbers.items():
        click.echo(
            f"  {key.ljust(width)}  {value:.6g}"
            if isinstance(value, float)
            else f"  {key.ljust(width)}  {value}"
        )
