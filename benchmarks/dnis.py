"""DNIS around BPR-MF (K = 64) against uniform widths, on MovieLens-100k and power-law data.

Protocol: random 8:1:1 split per user; BPR-MF with Adam (lr 2e-3, batch 2048, one uniform
negative); every run selects its best epoch on validation Recall@20 (patience 10) and is
tested once. DNIS keeps the base's optimiser settings; its alpha steps use validation batches,
so validation serves the search and the selection, and test is never seen before the end.
Each configuration runs with 3 seeds (split and initialisation); the tables give the mean.

- uniform: BPR-MF at embedding widths 8, 16, 32, 64 (64 is the full-width model);
- DNIS: 10 frequency blocks per table, warm start, search (alternating weight / alpha steps),
  pruning to ``keep_ratio`` of the ID-embedding parameters, fine-tuning until early stopping.

Bars (issue 5): DNIS at half the parameters keeps test Recall@20 within 2% of full width and
beats uniform width 32 (the same parameter count); the largest reduction within 2% is
reported; the DNIS run costs at most 3x one base training run (wall-clock, same machine).

    python -m benchmarks.dnis [--datasets ml-100k synthetic-2000x1000x40000] \
        [--seeds 2020 2021 2022] [--ratios 0.75 0.5 0.25] [--widths 8 16 32 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.common import summarize, train_seeds, write_result

KEYS = ("recall_at_20", "ndcg_at_20", "recall_at_10", "ndcg_at_10")
BAR_METRIC = "recall_at_20"
TOLERANCE = 0.02
FULL = 64
LEARNING_RATE = 2e-3
"""Twice RecBole's default: the same accuracy in about half the epochs (a shared CPU)."""
DNIS_PARAMS = {
    "n_blocks": 10,
    "l1_weight": 1e-4,
    "alpha_lr": 0.01,
    "warm_start_epochs": 20,
    "search_epochs": 10,
}


def run_sections(dataset: str, threads: int) -> dict:
    """The data, split, train and evaluation sections every run of the DNIS benchmarks shares
    (``train_seeds``' keywords)."""
    return {
        "data": {"name": dataset},
        "split": {"strategy": "ratio", "ratios": [0.8, 0.1, 0.1]},
        "train": {
            "valid_metric": BAR_METRIC,
            "patience": 10,
            "epochs": 500,
            "learning_rate": LEARNING_RATE,
            "batch_size": 2048,
            "num_threads": threads,
        },
        "evaluation": {"topk": [10, 20]},
    }


def dnis_model(keep_ratio: float, **extra: object) -> dict:
    """The model section of DNIS around BPR-MF at width ``FULL`` with the benchmark's search
    settings (``extra`` overrides or adds DNIS options)."""
    return {
        "name": "dnis",
        "base": "bpr",
        "base_params": {"embedding_size": FULL},
        "keep_ratio": keep_ratio,
        **DNIS_PARAMS,
        **extra,
    }


def _kept_parameters(folder: Path) -> dict[int, int]:
    """split seed -> kept ID-embedding parameters, from the DNIS run folders in ``folder``."""
    out = {}
    for dims in folder.glob("*/dnis_dimensions.json"):
        seed = yaml.safe_load((dims.parent / "config.yaml").read_text())["split"]["seed"]
        out[int(seed)] = int(json.loads(dims.read_text())["kept_parameters"])
    return out


def _dims(folder: Path, seed: int) -> dict:
    for dims in folder.glob("*/dnis_dimensions.json"):
        cfg = yaml.safe_load((dims.parent / "config.yaml").read_text())
        if cfg["split"]["seed"] == seed:
            report = json.loads(dims.read_text())
            return {role: [r["dim"] for r in rows] for role, rows in report["blocks"].items()}
    return {}


def run_dataset(
    dataset: str, seeds: list[int], ratios: list[float], widths: list[int], threads: int
) -> dict:
    from recsys.config import build_run_config
    from recsys.data.catalog import load_dataset

    cfg = build_run_config(None, [], data={"name": dataset})
    data = load_dataset(cfg.data)
    n_rows = data.n_users + data.n_items
    out: dict = {"dataset": dataset, "users": data.n_users, "items": data.n_items, "models": {}}
    common = run_sections(dataset, threads)
    with tempfile.TemporaryDirectory(prefix="bench-dnis-") as tmp:
        for width in sorted(widths, reverse=True):
            label = f"bpr-{width}"
            runs = train_seeds(
                label,
                seeds,
                Path(tmp),
                model={"name": "bpr", "embedding_size": width},
                **common,
            )
            for run in runs:
                run["parameters"] = n_rows * width
            out["models"][label] = {"kind": "uniform", "setting": width, "runs": runs}
        for ratio in ratios:
            label = f"dnis-{ratio:g}"
            runs = train_seeds(label, seeds, Path(tmp), model=dnis_model(ratio), **common)
            kept = _kept_parameters(Path(tmp) / label)
            for run in runs:
                run["parameters"] = kept[run["seed"]]
                run["dims"] = _dims(Path(tmp) / label, run["seed"])
            out["models"][label] = {"kind": "dnis", "setting": ratio, "runs": runs}
    for entry in out["models"].values():
        entry["summary"] = summarize(entry["runs"], KEYS)
        entry["parameters"] = float(np.mean([r["parameters"] for r in entry["runs"]]))
        entry["seconds"] = float(np.mean([r["seconds"] for r in entry["runs"]]))
        entry["epochs"] = float(np.mean([r["epochs_run"] for r in entry["runs"]]))
    out["verdict"] = verdict(out, ratios)
    return out


def _mean(entry: dict, key: str = BAR_METRIC) -> float:
    return entry["summary"][key]["mean"]


def verdict(out: dict, ratios: list[float]) -> dict:
    models = out["models"]
    full = models[f"bpr-{FULL}"]
    full_value = _mean(full)
    bar = (1 - TOLERANCE) * full_value
    verdict: dict = {"full_width": full_value, "within_2pct_bar": bar}
    half = models.get("dnis-0.5")
    same = models.get(f"bpr-{FULL // 2}")
    if half is not None:
        verdict["dnis_half"] = _mean(half)
        verdict["dnis_half_relative"] = _mean(half) / full_value
        verdict["dnis_half_within_2pct"] = _mean(half) >= bar
        if same is not None:
            verdict["uniform_half"] = _mean(same)
            verdict["dnis_half_beats_uniform_half"] = _mean(half) > _mean(same)
    holding = [r for r in ratios if f"dnis-{r:g}" in models and _mean(models[f"dnis-{r:g}"]) >= bar]
    if holding:
        best = min(holding)
        entry = models[f"dnis-{best:g}"]
        verdict["largest_reduction_within_2pct"] = {
            "keep_ratio": best,
            "parameters": entry["parameters"],
            "reduction": full["parameters"] / entry["parameters"],
        }
    else:
        verdict["largest_reduction_within_2pct"] = None
    verdict["cost_vs_base_run"] = {
        f"dnis-{r:g}": {
            "seconds_ratio": models[f"dnis-{r:g}"]["seconds"] / full["seconds"],
            "epochs_ratio": models[f"dnis-{r:g}"]["epochs"] / full["epochs"],
        }
        for r in ratios
        if f"dnis-{r:g}" in models
    }
    worst = max(v["seconds_ratio"] for v in verdict["cost_vs_base_run"].values())
    verdict["cost_at_most_3x"] = worst <= 3.0
    verdict["grid_cost_in_base_runs"] = (
        sum(m["seconds"] for m in models.values() if m["kind"] == "uniform") / full["seconds"]
    )
    return verdict


def markdown(results: list[dict], seeds: list[int]) -> str:
    lines = [
        "# DNIS around BPR-MF (K = 64) versus uniform widths",
        "",
        __doc__.split("\n\n")[1],
        "",
        f"Seeds {', '.join(map(str, seeds))}; mean ± std over seeds; parameters are the "
        "ID-embedding parameters of the deployed model.",
    ]
    for res in results:
        v = res["verdict"]
        lines += [
            "",
            f"## {res['dataset']} ({res['users']} users, {res['items']} items)",
            "",
            "| model | parameters | test Recall@20 | test NDCG@20 | valid Recall@20 | epochs | "
            "s/run |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, m in sorted(res["models"].items(), key=lambda kv: kv[1]["parameters"]):
            s = m["summary"]
            valid = np.mean([r["valid"][BAR_METRIC] for r in m["runs"]])
            lines.append(
                f"| {label} | {m['parameters']:,.0f} | {s[BAR_METRIC]['mean']:.4f} ± "
                f"{s[BAR_METRIC]['std']:.4f} | {s['ndcg_at_20']['mean']:.4f} | {valid:.4f} | "
                f"{m['epochs']:.0f} | {m['seconds']:.0f} |"
            )
        lines += ["", "Bars:", ""]
        if "dnis_half" in v:
            lines.append(
                f"- DNIS at half the parameters: {v['dnis_half']:.4f} = "
                f"{100 * v['dnis_half_relative']:.1f}% of full width {v['full_width']:.4f} "
                f"(within 2%: **{v['dnis_half_within_2pct']}**)"
            )
        if "uniform_half" in v:
            lines.append(
                f"- against uniform width 32 (same parameters): {v['uniform_half']:.4f} "
                f"(DNIS better: **{v['dnis_half_beats_uniform_half']}**)"
            )
        red = v["largest_reduction_within_2pct"]
        lines.append(
            "- largest reduction within 2% of full width: "
            + (
                f"keep ratio {red['keep_ratio']:g}, {red['reduction']:.2f}x fewer parameters"
                if red
                else "none of the tested ratios"
            )
        )
        grid = "/".join(str(m["setting"]) for m in res["models"].values() if m["kind"] == "uniform")
        costs = ", ".join(
            f"{k} {c['seconds_ratio']:.2f}x ({c['epochs_ratio']:.2f}x epochs)"
            for k, c in v["cost_vs_base_run"].items()
        )
        lines.append(
            f"- cost of a DNIS run against one full-width base run: {costs} "
            f"(at most 3x: **{v['cost_at_most_3x']}**); the uniform grid {grid} costs "
            f"{v['grid_cost_in_base_runs']:.2f} base runs"
        )
        lines += ["", "Chosen dimensions per block (block 0 = most frequent), first seed:", ""]
        for label, m in res["models"].items():
            if m["kind"] == "dnis" and m["runs"][0].get("dims"):
                dims = "; ".join(f"{role} {d}" for role, d in m["runs"][0]["dims"].items())
                lines.append(f"- {label}: {dims}")
    return "\n".join(lines)


def measure_cost(dataset: str, seeds: list[int], ratio: float, threads: int) -> dict:
    """CPU seconds (this process, so other load on a shared machine does not count) of one
    full-width base run and one DNIS run per seed, run back to back."""
    import time

    common = run_sections(dataset, threads)
    dnis = dnis_model(ratio)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dnis-cost-") as tmp:
        for seed in seeds:
            row: dict = {"seed": seed}
            for label, model in (("base", {"name": "bpr", "embedding_size": FULL}), ("dnis", dnis)):
                tic = time.process_time()
                (run,) = train_seeds(f"{label}-{seed}", [seed], Path(tmp), model=model, **common)
                row[label] = {
                    "cpu_seconds": time.process_time() - tic,
                    "wall_seconds": run["seconds"],
                    "epochs": run["epochs_run"],
                }
            row["cpu_ratio"] = row["dnis"]["cpu_seconds"] / row["base"]["cpu_seconds"]
            rows.append(row)
    return {
        "dataset": dataset,
        "keep_ratio": ratio,
        "runs": rows,
        "cpu_ratio_mean": float(np.mean([r["cpu_ratio"] for r in rows])),
    }


def plot(result_json: Path) -> list[Path]:
    """``<result>-<dataset>.png``: mean parameters versus mean test Recall@20 per model."""
    from recsys.dnis.report import FrontierPoint, plot_frontier

    payload = json.loads(Path(result_json).read_text())
    out = []
    for res in payload["results"]:
        points = [
            FrontierPoint(
                label=label,
                kind=m["kind"],
                setting=m["setting"],
                parameters=round(m["parameters"]),
                valid={},
                test={k: v["mean"] for k, v in m["summary"].items()},
                run_dir="",
                seconds=m["seconds"],
                epochs_run=round(m["epochs"]),
            )
            for label, m in res["models"].items()
        ]
        path = Path(result_json).with_name(f"{Path(result_json).stem}.png")
        path.write_bytes(plot_frontier(points))
        out.append(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic-2000x1000x40000"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.75, 0.5, 0.25])
    parser.add_argument("--widths", nargs="+", type=int, default=[8, 16, 32, 64])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="dnis", help="Result file name under results/.")
    parser.add_argument(
        "--cost",
        action="store_true",
        help="Only measure the CPU time of DNIS (keep ratio 0.5) against one base run.",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        help="Only draw results/<name>.png (mean test Recall@20 per model) from a result JSON.",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.plot:
        plot(args.plot)
        return
    if args.cost:
        costs = [measure_cost(d, args.seeds, 0.5, args.threads) for d in args.datasets]
        lines = [
            "# DNIS search cost against one base training run (CPU seconds of the process)",
            "",
            "| dataset | seed | base CPU s (epochs) | DNIS CPU s (epochs) | ratio |",
            "|---|---|---|---|---|",
        ]
        for c in costs:
            for r in c["runs"]:
                lines.append(
                    f"| {c['dataset']} | {r['seed']} | {r['base']['cpu_seconds']:.0f} "
                    f"({r['base']['epochs']}) | {r['dnis']['cpu_seconds']:.0f} "
                    f"({r['dnis']['epochs']}) | {r['cpu_ratio']:.2f} |"
                )
            lines.append(f"| {c['dataset']} | mean | | | **{c['cpu_ratio_mean']:.2f}** |")
        write_result(args.name, {"dnis_params": DNIS_PARAMS, "costs": costs}, "\n".join(lines))
        print("\n".join(lines))
        return
    results = []
    for dataset in args.datasets:
        results.append(run_dataset(dataset, args.seeds, args.ratios, args.widths, args.threads))
        # partial results survive an interrupted run
        write_result(
            args.name,
            {"seeds": args.seeds, "dnis_params": DNIS_PARAMS, "results": results},
            markdown(results, args.seeds),
        )
    print(markdown(results, args.seeds))


if __name__ == "__main__":
    main()
