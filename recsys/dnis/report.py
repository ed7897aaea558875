"""DNIS searches and the parameters-versus-accuracy report.

:func:`run_search` trains one DNIS model (a run folder like ``recsys train``'s, plus
``dnis_dimensions.json``). :func:`run_frontier` trains DNIS at several budgets and the base
model at several uniform widths on the same data and split seed, and :func:`write_report`
writes the comparison: ``report.json``, ``report.md`` (table), ``frontier.png`` (ID-embedding
parameters versus Recall@20) and ``report.html`` (both, plus each DNIS model's chosen
dimensions per block), all logged to an MLflow run of their own.

Selection is on validation throughout (the trainer's best epoch; DNIS's alpha steps also use
validation batches); test metrics are computed once per run, after training.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from recsys.config import RunConfig, validate
from recsys.data.catalog import load_dataset
from recsys.data.split import make_split, resolve_split_config
from recsys.errors import ConfigError
from recsys.experiment import (
    RunResult,
    build_model,
    check_train_settings,
    load_run,
    train_run,
)
from recsys.jsonio import dumps_json
from recsys.models.base import Recommender
from recsys.train.checkpoint import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

REPORT_METRIC = "recall_at_20"


@dataclass
class FrontierPoint:
    """One trained model of the comparison."""

    label: str
    kind: str
    """``dnis`` or ``uniform``."""
    setting: float
    """The keep ratio (``dnis``) or the embedding width (``uniform``)."""
    parameters: int
    """ID-embedding parameters of the deployed model."""
    valid: dict[str, float]
    test: dict[str, float]
    run_dir: str
    seconds: float
    epochs_run: int
    dims: dict[str, list[int]] = field(default_factory=dict)
    """DNIS: chosen dimension of every block, per role."""


def id_embedding_parameters(model: Recommender) -> int:
    """Parameters of a model's ID-embedding tables (DNIS: the kept ones)."""
    from recsys.models.dnis import DNIS

    if isinstance(model, DNIS):
        return model.kept_parameters()
    total = 0
    for attr in model.id_embeddings().values():
        table = getattr(model, attr)
        total += int(table.weight.numel())
    return total


def _point(result: RunResult, label: str, kind: str, setting: float) -> FrontierPoint:
    _, _, _, model = load_run(result.run_dir)
    dims: dict[str, list[int]] = {}
    if kind == "dnis":
        dims = model.block_dims()
    return FrontierPoint(
        label=label,
        kind=kind,
        setting=setting,
        parameters=id_embedding_parameters(model),
        valid={k: float(v) for k, v in result.valid.items()},
        test={k: float(v) for k, v in result.test.items()},
        run_dir=str(result.run_dir),
        seconds=float(result.seconds),
        epochs_run=int(result.epochs_run),
        dims=dims,
    )


def saved_phase(cfg: RunConfig, epoch: int) -> str:
    """The schedule phase (``warm``, ``search`` or ``finetune``) of a DNIS run's saved epoch:
    a ``warm`` or ``search`` epoch was pruned to the budget from its own state when saved."""
    from recsys.models.registry import create_model

    return create_model("dnis", **cfg.model_params()).phase(epoch)


def run_search(cfg: RunConfig) -> tuple[RunResult, dict[str, Any]]:
    """Train the DNIS model of ``cfg``; returns the run and its dimension report."""
    if cfg.model["name"] != "dnis":
        raise ValueError("run_search needs a config whose model.name is dnis")
    check_train_settings(cfg)  # before any data is read or run folder made
    result = train_run(cfg)
    report = json.loads((Path(result.run_dir) / "dnis_dimensions.json").read_text())
    return result, report


def _with(cfg: RunConfig, model: dict[str, Any], run_name: str) -> RunConfig:
    values = cfg.model_dump(mode="json")
    values["model"] = model
    values["run_name"] = run_name
    return validate(RunConfig, values)


def _check_models(runs: list[tuple[str, str, float, RunConfig]], width_key: str) -> None:
    """Set up every model of the report on the data before the first one trains.

    A model that cannot be built (a keep ratio below one dimension per row, a width the
    base's config refuses) would otherwise fail after the ones before it had trained. A
    uniform model's ``width_key`` must be the width of its ID-embedding tables, or its
    point would sit at the wrong parameter count (the two-tower's ``embedding_size`` is its
    output width; its ID tables are ``feature_dim`` wide).
    """
    cfg = runs[0][3]
    dataset = load_dataset(cfg.data)
    split = make_split(dataset, resolve_split_config(dataset, cfg.split))
    for label, kind, setting, run_cfg in runs:
        try:
            model = build_model(run_cfg, split, dataset)
        except ConfigError as exc:
            raise ConfigError(f"report model {label}: {exc}") from None
        if kind != "uniform":
            continue
        widths = {
            attr: int(getattr(model, attr).embedding_dim) for attr in model.id_embeddings().values()
        }
        if any(w != int(setting) for w in widths.values()):
            raise ConfigError(
                f"report model {label}: {width_key}={int(setting)} does not set the width of "
                f"the ID-embedding tables of {run_cfg.model['name']!r} (they are {widths}); "
                "give the base hyper-parameter that does as the width key (--width-key)"
            )


def run_frontier(
    cfg: RunConfig,
    ratios: list[float],
    widths: list[int],
    width_key: str = "embedding_size",
    stamp: str | None = None,
    on_point: Callable[[list[FrontierPoint]], None] | None = None,
) -> list[FrontierPoint]:
    """DNIS at each keep ratio and the base at each uniform width, same data and seeds.

    ``cfg`` is a DNIS run config; the uniform runs train ``cfg.model["base"]`` with its
    ``base_params`` and ``width_key`` set to each width, and the rest of ``cfg`` unchanged.
    Every model is set up once before the first one trains, so a setting that cannot work
    fails in seconds, not after hours of training; ``on_point`` is called with the points so
    far after each run (to write a partial report that survives a later failure).

    Raises:
        ConfigError: a repeated ratio or width, or a model of the report that cannot be set
            up (naming it).
    """
    for name, values in (("ratios", ratios), ("widths", widths)):
        repeated = sorted({v for v in values if list(values).count(v) > 1})
        if repeated:
            raise ConfigError(f"the report's {name} list {repeated} more than once")
    check_train_settings(cfg)  # every DNIS model of the report runs this schedule
    stamp = stamp or datetime.now().strftime("%Y%m%d-%H%M%S")
    model = dict(cfg.model)
    base, base_params = model["base"], dict(model["base_params"])
    runs: list[tuple[str, str, float, RunConfig]] = []
    for ratio in ratios:
        label = f"dnis-{ratio:g}"
        dnis = {**model, "keep_ratio": ratio, "param_budget": None}
        runs.append((label, "dnis", ratio, _with(cfg, dnis, f"{label}-{stamp}")))
    for width in widths:
        label = f"{base}-{width}"
        try:
            values = {"name": base, **base_params, width_key: width}
            uniform = _with(cfg, values, f"{label}-{stamp}")
        except ConfigError as exc:
            raise ConfigError(f"report model {label} ({width_key}={width}): {exc}") from None
        runs.append((label, "uniform", width, uniform))
    _check_models(runs, width_key)
    points: list[FrontierPoint] = []
    for label, kind, setting, run_cfg in runs:
        result = train_run(run_cfg)
        points.append(_point(result, label, kind, setting))
        log.info("%s: %s", label, points[-1].test.get(REPORT_METRIC))
        if on_point is not None:
            on_point(list(points))
    return points


# --------------------------------------------------------------------------- the report


def plot_frontier(points: list[FrontierPoint], metric: str = REPORT_METRIC) -> bytes:
    """PNG: ID-embedding parameters (log x) versus test ``metric``, DNIS against uniform."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for kind, style, name in (("uniform", "o--", "uniform width"), ("dnis", "s-", "DNIS")):
        chosen = sorted((p for p in points if p.kind == kind), key=lambda p: p.parameters)
        if not chosen:
            continue
        xs = [p.parameters for p in chosen]
        ys = [p.test.get(metric, float("nan")) for p in chosen]
        ax.plot(xs, ys, style, label=name)
        for p, x, y in zip(chosen, xs, ys, strict=True):
            text = f"keep {p.setting:g}" if kind == "dnis" else f"d={int(p.setting)}"
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("ID-embedding parameters")
    ax.set_ylabel(f"test {metric.replace('_at_', '@')}")
    ax.set_title("Parameters versus accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def markdown_table(points: list[FrontierPoint], metric: str = REPORT_METRIC) -> str:
    """One row per model: parameters, validation and test ``metric``, epochs, seconds."""
    label = metric.replace("_at_", "@")
    lines = [
        f"| model | ID-embedding parameters | valid {label} | test {label} | epochs | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for p in sorted(points, key=lambda p: p.parameters):
        lines.append(
            f"| {p.label} | {p.parameters:,} | {p.valid.get(metric, float('nan')):.4f} | "
            f"{p.test.get(metric, float('nan')):.4f} | {p.epochs_run} | {p.seconds:.0f} |"
        )
    return "\n".join(lines)


def dims_table(dims: dict[str, list[int]]) -> str:
    """Markdown: the chosen dimension of every block, one row per role."""
    if not dims:
        return ""
    n = max(len(v) for v in dims.values())
    lines = ["| role | " + " | ".join(f"block {s}" for s in range(n)) + " |"]
    lines.append("|---" * (n + 1) + "|")
    for role, values in dims.items():
        lines.append(f"| {role} | " + " | ".join(str(v) for v in values) + " |")
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(points: list[FrontierPoint], png: bytes, metric: str = REPORT_METRIC) -> str:
    """The report page: the plot (embedded PNG), the table, and DNIS's chosen dimensions."""
    label = metric.replace("_at_", "@")
    rows = [
        [
            p.label,
            f"{p.parameters:,}",
            f"{p.valid.get(metric, float('nan')):.4f}",
            f"{p.test.get(metric, float('nan')):.4f}",
            p.epochs_run,
            f"{p.seconds:.0f}",
        ]
        for p in sorted(points, key=lambda p: p.parameters)
    ]
    table = _html_table(
        ["model", "ID-embedding parameters", f"valid {label}", f"test {label}", "epochs", "s"],
        rows,
    )
    dims = ""
    for p in points:
        if p.kind != "dnis" or not p.dims:
            continue
        n = max(len(v) for v in p.dims.values())
        dims += f"<h3>{html.escape(p.label)}</h3>" + _html_table(
            ["role", *(f"block {s}" for s in range(n))],
            [[role, *values] for role, values in p.dims.items()],
        )
    b64 = base64.b64encode(png).decode("ascii")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>DNIS report</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:.2em .6em;text-align:right}</style></head><body>"
        "<h1>DNIS: parameters versus accuracy</h1>"
        "<p>Blocks are rows ranked by training frequency (block 0 the most frequent); "
        "selection on validation, test computed once per run.</p>"
        f"<img src='data:image/png;base64,{b64}' alt='parameters versus {label}'>"
        f"<h2>Models</h2>{table}<h2>Chosen dimensions per block</h2>{dims}</body></html>"
    )


def write_report(
    points: list[FrontierPoint], folder: Path, metric: str = REPORT_METRIC
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``frontier.png`` and ``report.html``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png = plot_frontier(points, metric)
    paths = {
        "json": folder / "report.json",
        "markdown": folder / "report.md",
        "png": folder / "frontier.png",
        "html": folder / "report.html",
    }
    atomic_write_text(
        paths["json"],
        dumps_json({"metric": metric, "points": [asdict(p) for p in points]}, indent=2) + "\n",
    )
    md = "# DNIS: parameters versus accuracy\n\n" + markdown_table(points, metric) + "\n"
    for p in points:
        if p.kind == "dnis" and p.dims:
            md += f"\n## {p.label}: dimensions per block\n\n{dims_table(p.dims)}\n"
    atomic_write_text(paths["markdown"], md)
    atomic_write_bytes(paths["png"], png)
    atomic_write_text(paths["html"], render_html(points, png, metric))
    return paths
