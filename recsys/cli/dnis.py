"""``recsys dnis``: search per-block embedding dimensions of a model, and the frontier report."""

from __future__ import annotations

from datetime import datetime
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
from recsys.jsonio import dumps_json


def _floats(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        out = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None
    if not out or any(not 0 < v <= 1 for v in out):
        raise click.BadParameter(f"ratios must be in (0, 1], got {value!r}")
    return _distinct(out, value)


def _distinct(values: list, text: str) -> list:
    # a repeated setting would train the same model twice under one label of the report
    if len(set(values)) != len(values):
        raise click.BadParameter(f"a value is listed twice in {text!r}")
    return values


def _ints(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not out or any(v <= 0 for v in out):
        raise click.BadParameter(f"widths must be positive, got {value!r}")
    return _distinct(out, value)


@click.command()
@config_option("YAML run config (its model section, if any, is the DNIS model's).")
@dataset_options
@click.option(
    "-b",
    "--base",
    help="Model whose ID embeddings are searched (default bpr; see `recsys models`).",
)
@click.option(
    "-p",
    "--base-set",
    "base_overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="A hyper-parameter of the base model, e.g. -p embedding_size=64 (repeatable).",
)
@click.option(
    "-r",
    "--keep-ratio",
    type=click.FloatRange(0, 1, min_open=True),
    help="Share of the ID-embedding parameters kept (default 0.5).",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    help="ID-embedding parameters kept (instead of --keep-ratio).",
)
@click.option(
    "--report",
    is_flag=True,
    help="Also train DNIS at --ratios and the base at --uniform widths, and write the report.",
)
@click.option(
    "--ratios",
    callback=_floats,
    default="0.75,0.5,0.25",
    show_default=True,
    help="Keep ratios of the report's DNIS models.",
)
@click.option(
    "--uniform",
    callback=_ints,
    default="8,16,32,64",
    show_default=True,
    help="Uniform widths of the report's base models.",
)
@click.option(
    "--width-key",
    default="embedding_size",
    show_default=True,
    help="The base hyper-parameter the uniform widths set.",
)
@set_option("Override a config key, e.g. --set model.l1_weight=1e-4 (repeatable).")
@output_dir_option("Where runs go.")
@tracking_options()
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@quiet_option()
def dnis(
    config_path: Path | None,
    dataset: str | None,
    data_path: Path | None,
    base: str | None,
    base_overrides: tuple[str, ...],
    keep_ratio: float | None,
    budget: int | None,
    report: bool,
    ratios: list[float],
    uniform: list[int],
    width_key: str,
    overrides: tuple[str, ...],
    output_dir: Path | None,
    tracking_uri: str | None,
    no_tracking: bool,
    device: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Search per-block embedding dimensions of a model with DNIS.

    Trains DNIS around the base model (warm start, alternating weight / alpha steps with
    alpha on validation batches, pruning to the budget, fine-tuning), saves the pruned model
    with per-block tables of their own width, and prints the chosen dimension of every
    frequency block. With --report it also trains DNIS at several keep ratios and the base at
    uniform widths, and writes report.html / report.md / frontier.png / report.json
    (ID-embedding parameters versus Recall@20), logged to MLflow.
    """
    from recsys.config import apply_overrides, build_run_config, load_config_dict
    from recsys.dnis.report import run_frontier, run_search, saved_phase, write_report
    from recsys.errors import ConfigError
    from recsys.models.registry import get_model_class
    from recsys.tracking import make_tracker

    if keep_ratio is not None and budget is not None:
        raise click.UsageError("give --keep-ratio or --budget, not both")
    if report and (keep_ratio is not None or budget is not None):
        # the report trains DNIS at --ratios only: a single budget would be ignored
        raise click.UsageError(
            "--report trains DNIS at each of --ratios; --keep-ratio and --budget set the "
            "budget of a single search (drop them, or put the ratio in --ratios)"
        )
    model = dict(load_config_dict(config_path).get("model") or {})
    if model and model.get("name", "dnis") != "dnis":
        raise click.UsageError(
            f"{config_path}: model.name is {model.get('name')!r}; `recsys dnis` trains dnis "
            "(put the searched model in model.base)"
        )
    model["name"] = "dnis"
    if base:
        try:
            get_model_class(base, key=None)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--base") from None
        model["base"] = base
    if base_overrides:
        model["base_params"] = apply_overrides(
            dict(model.get("base_params") or {}), list(base_overrides)
        )
    if keep_ratio is not None:
        model["keep_ratio"] = keep_ratio
        # a param_budget from the config file would override the ratio asked for here
        model["param_budget"] = None
    if budget is not None:
        model["param_budget"] = budget
    extra = run_overrides(
        overrides, tracking_uri=tracking_uri, no_tracking=no_tracking, quiet=quiet, device=device
    )
    cfg = build_run_config(
        config_path,
        extra,
        model=model,
        data=data_section(dataset, data_path),
        output_dir=str(output_dir) if output_dir else None,
    )

    if not report:
        result, dims = run_search(cfg)
        phase = saved_phase(cfg, result.best_epoch)
        summary = {
            "run_dir": str(result.run_dir),
            "valid": result.valid,
            "test": result.test,
            "best_epoch": result.best_epoch,
            "phase": phase,
            "dimensions": dims,
        }
        if as_json:
            click.echo(dumps_json(summary, indent=2, default=float))
            return
        click.echo(_dims_text(dims))
        click.echo(_saved_text(result.best_epoch, phase, cfg.model))
        metric = "recall_at_20" if "recall_at_20" in result.test else cfg.train.valid_metric
        click.echo(
            f"valid {metric} {result.valid.get(metric, float('nan')):.4f}  "
            f"test {metric} {result.test.get(metric, float('nan')):.4f}"
        )
        click.echo(f"run folder: {result.run_dir}")
        return

    # checked before DNIS trains: the report's uniform-width models set this key last
    fields = get_model_class(cfg.model["base"]).config_class.model_fields
    if width_key not in fields:
        raise click.BadParameter(
            f"the base model {cfg.model['base']!r} has no hyper-parameter {width_key!r}; "
            f"its hyper-parameters: {', '.join(sorted(fields))}",
            param_hint="--width-key",
        )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = cfg.output_dir / f"dnis-report-{stamp}"
    suffix = 1
    while folder.exists():  # another report of the same second keeps its files
        suffix += 1
        folder = cfg.output_dir / f"dnis-report-{stamp}-{suffix}"

    def partial(points: list) -> None:
        # rewritten after every run, so a failure later keeps the finished part
        write_report(points, folder)

    points = run_frontier(cfg, ratios, uniform, width_key=width_key, stamp=stamp, on_point=partial)
    paths = write_report(points, folder)
    tracker = make_tracker(
        cfg.tracking.enabled, cfg.tracking.uri, cfg.output_dir.resolve(), cfg.tracking.experiment
    )
    with tracker:
        tracker.start(
            folder.name,
            {
                "base": cfg.model["base"],
                "ratios": ",".join(f"{r:g}" for r in ratios),
                "uniform": ",".join(str(w) for w in uniform),
            },
            tags={"kind": "dnis-report", "report_dir": str(folder.resolve())},
        )
        for p in points:
            tracker.log_metrics(
                {
                    f"{p.label}/parameters": p.parameters,
                    f"{p.label}/test_recall_at_20": p.test.get("recall_at_20", float("nan")),
                    f"{p.label}/valid_recall_at_20": p.valid.get("recall_at_20", float("nan")),
                }
            )
        for path in paths.values():
            tracker.log_artifact(path, "report")
    if as_json:
        click.echo(dumps_json({k: str(v) for k, v in paths.items()}, indent=2))
        return
    click.echo(paths["markdown"].read_text())
    click.echo(f"report: {paths['html']}")


def _saved_text(epoch: int, phase: str, model: dict) -> str:
    """Which state the run saved: the best fine-tuning epoch, or an earlier one pruned when
    saved (no fine-tuning, or model.best_epoch_from=any)."""
    if phase == "finetune":
        return f"saved model: best epoch {epoch} (fine-tuning, at the widths pruning fixed)"
    name = "warm start" if phase == "warm" else "search"
    why = "it validated better than every fine-tuning epoch (model.best_epoch_from=any)"
    if not model.get("finetune", True):
        why = "model.finetune=false"
    return (
        f"saved model: best epoch {epoch} ({name} phase, pruned to the budget from that "
        f"epoch's state when saved; {why})"
    )


def _dims_text(dims: dict) -> str:
    lines = [f"DNIS around {dims['base']}: chosen dimension per frequency block"]
    lines.append(f"{'role':<6} {'block':>5} {'rows':>7} {'interactions':>14} {'dim':>4}")
    for role, rows in dims["blocks"].items():
        for r in rows:
            span = f"{r['freq_max']}..{r['freq_min']}"
            lines.append(f"{role:<6} {r['block']:>5} {r['rows']:>7} {span:>14} {r['dim']:>4}")
    lines.append(
        f"ID-embedding parameters: {dims['kept_parameters']:,} of {dims['full_parameters']:,} "
        f"kept ({dims['kept_ratio']:.3f})"
    )
    return "\n".join(lines)
