"""``recsys train``, ``recsys evaluate`` and ``recsys recommend``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from recsys.cli.options import (
    config_option,
    data_section,
    dataset_options,
    device_option,
    output_dir_option,
    quiet_option,
    run_overrides,
    set_option,
    tracking_options,
)
from recsys.cli.table import metrics_table
from recsys.jsonio import dumps_json, nan_for_none


@click.command()
@config_option()
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    help="Model name (repeat to train several in turn); see `recsys models`.",
)
@dataset_options
@set_option()
@output_dir_option()
@tracking_options()
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Resume the interrupted run in this run folder, with its own config (an option "
    "that would change it is refused; a finished run has nothing to resume).",
)
@device_option()
@quiet_option()
def train(
    config_path: Path | None,
    models: tuple[str, ...],
    dataset: str | None,
    data_path: Path | None,
    overrides: tuple[str, ...],
    output_dir: Path | None,
    tracking_uri: str | None,
    no_tracking: bool,
    resume_dir: Path | None,
    device: str | None,
    quiet: bool,
) -> None:
    """Train a model, select its best epoch on validation, test it, and record the run.

    Prints the run folder (config, metrics.json, checkpoints, recommendations.csv, log) and a
    metrics table at the end.
    """
    from recsys.config import build_run_config
    from recsys.experiment import check_train_settings, train_run

    extra = run_overrides(
        overrides, tracking_uri=tracking_uri, no_tracking=no_tracking, quiet=quiet, device=device
    )

    if resume_dir is not None:
        _resume(resume_dir, extra, config_path, models, dataset, data_path, output_dir)
        return

    # every model's config is checked before the first one trains
    configs = [
        build_run_config(
            config_path,
            extra,
            model={"name": name} if name else None,
            data=data_section(dataset, data_path),
            output_dir=str(output_dir) if output_dir else None,
        )
        for name in models or (None,)
    ]
    for cfg in configs:
        check_train_settings(cfg)
    results = []
    for cfg in configs:
        # each run logs its folder as it starts; the table below lists them all again
        results.append(train_run(cfg))
    _report(results, configs[-1].eval.topk)


def _resume(
    run_dir: Path,
    extra: list[str],
    config_path: Path | None,
    models: tuple[str, ...],
    dataset: str | None,
    data_path: Path | None,
    output_dir: Path | None,
) -> None:
    """``recsys train --resume``: the run continues as its config.yaml describes it, so that
    file stays a true account of the run. Options that repeat the run's own settings are
    accepted, options that would change them are refused (exit 2), and ``--quiet`` (or
    ``train.progress``) only changes the console. A run that finished says so and exits 0,
    its folder untouched."""
    from recsys.config import RunConfig, apply_overrides, parse_override, validate
    from recsys.experiment import (
        RESUME_DISPLAY_KEYS,
        load_run_config,
        nothing_to_resume,
        override_changes,
        train_run,
    )

    setup = [
        ("--config", config_path),
        ("--model", models),
        ("--dataset", dataset),
        ("--data-path", data_path),
        ("--output-dir", output_dir),
    ]
    given = [flag for flag, value in setup if value]
    if given:
        raise click.UsageError(f"--resume takes the run's own config; drop {', '.join(given)}")
    saved = load_run_config(run_dir)
    changes = override_changes(saved, extra, ignore=RESUME_DISPLAY_KEYS)
    if changes:
        raise click.UsageError(
            f"--resume continues the run as its config.yaml describes it; these options would "
            f"change it: {'; '.join(changes)}. Drop them, or train a new run from its config "
            f"(recsys train -c {run_dir / 'config.yaml'} --set KEY=VALUE)"
        )
    done = nothing_to_resume(run_dir, saved)
    if done is not None:
        click.echo(done, err=True)
        return
    display = [text for text in extra if ".".join(parse_override(text)[0]) in RESUME_DISPLAY_KEYS]
    cfg = validate(RunConfig, apply_overrides(saved.model_dump(mode="json"), display))
    result = train_run(cfg, resume_dir=run_dir)
    _report([result], cfg.eval.topk)


def _report(results: list, topk: list[int]) -> None:
    rows = []
    for r in results:
        metrics = json.loads((r.run_dir / "metrics.json").read_text())
        # a metric with nothing to average over is null in the file (strict JSON): NaN here
        test = nan_for_none(metrics["test"])
        rows.append((metrics["model"], metrics["best_epoch"], r.seconds, test))
    click.echo(metrics_table(rows, topk))
    for r in results:
        click.echo(f"run folder: {r.run_dir}")


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON.")
@device_option("cpu, cuda or cuda:N (default: the run's train.device).")
def evaluate(run_dir: Path, as_json: bool, device: str | None) -> None:
    """Re-evaluate a run's best checkpoint on its validation and test data."""
    from recsys.experiment import evaluate_run, load_run_config

    metrics = evaluate_run(run_dir, device=device)
    if as_json:
        # a metric with no user to average over is NaN, which JSON has no word for: null
        # (json.dumps would write NaN, which JSON parsers reject)
        click.echo(dumps_json(metrics, indent=2))
        return
    topk = load_run_config(run_dir).eval.topk
    click.echo(
        metrics_table([(part, "", None, m) for part, m in metrics.items()], topk, first="part")
    )


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "-k",
    "--top",
    "k",
    type=click.IntRange(min=1),
    help="Recommendations per user (default: the run's recommend_k, 10 unless set).",
)
@click.option("-u", "--user", "users", multiple=True, help="Raw user id (repeatable; default all).")
@click.option(
    "--users-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="File with one raw user id per line.",
)
@click.option("--include-seen", is_flag=True, help="Allow items the user already interacted with.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CSV file to write (default: standard output).",
)
@device_option("cpu, cuda or cuda:N (default: the run's train.device).")
def recommend(
    run_dir: Path,
    k: int | None,
    users: tuple[str, ...],
    users_file: Path | None,
    include_seen: bool,
    output: Path | None,
    device: str | None,
) -> None:
    """Top-k recommendations as CSV ``user,item,rank,score`` with raw ids."""
    from recsys.experiment import recommend_run
    from recsys.train.checkpoint import atomic_write_text

    wanted = list(users)
    if users_file:
        try:
            # utf-8-sig: a byte-order mark from a spreadsheet export is not part of the first id
            text = users_file.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise click.BadParameter(
                f"{users_file} is not UTF-8 text ({exc.reason})", param_hint="--users-file"
            ) from None
        listed = [line.strip() for line in text.splitlines() if line.strip()]
        if not listed:
            raise click.BadParameter(f"{users_file} lists no user ids", param_hint="--users-file")
        wanted += listed
    frame = recommend_run(run_dir, k, wanted or None, exclude_seen=not include_seen, device=device)
    text = frame.to_csv(index=False)
    if output:
        atomic_write_text(output, text)
        click.echo(f"wrote {len(frame)} rows to {output}", err=True)
    else:
        sys.stdout.write(text)
