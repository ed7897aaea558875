"""DNIS around the two-tower model, whose ID embeddings feed MLP towers rather than a dot product.

benchmarks/dnis_allocations.py shows that with BPR-MF, where a user and an item embedding meet
column by column, uniform widths are the best allocation we found. In the two-tower model the
user and item ID embeddings (width ``feature_dim`` = 32) are inputs of the towers' MLPs, next
to the other features, as in the paper's CF models (FM/MLP/NeuMF). Here mixed widths waste
nothing.

Protocol: random 8:1:1 split per user; the two-tower model without SSL, with logQ correction
and temperature 0.2 (the main task benchmarks/twotower.py chooses on MovieLens-100k
validation); Adam lr 1e-3, batch 1024; best epoch on validation Recall@20, patience 5; 3 seeds.
Rows: the full model; uniform ID widths 16 and 8 (fixed ``block_dims``, the other features
unchanged); DNIS at keep ratios 0.5 and 0.25 (warm start 10 epochs, search 5); and DNIS at keep
ratio 1 (the same schedule, nothing pruned), which separates the effect of pruning from that of
DNIS's longer schedule. Parameters are the ID-embedding parameters.

    python -m benchmarks.dnis_twotower [--datasets ml-100k synthetic-2000x1000x40000] \
        [--seeds 2020 2021 2022] [--jobs 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import parallel_map, summarize, train_seeds, write_result
from benchmarks.dnis import _dims, _kept_parameters

BAR_METRIC = "recall_at_20"
KEYS = ("recall_at_20", "ndcg_at_20", "recall_at_10", "ndcg_at_10")
TOLERANCE = 0.02
BLOCKS = 10
BASE = {"logq_correction": True, "temperature": 0.2, "ssl": "none", "feature_dim": 32}
SEARCH = {"n_blocks": BLOCKS, "warm_start_epochs": 10, "search_epochs": 5}
TRAIN = {
    "valid_metric": BAR_METRIC,
    "patience": 5,
    "epochs": 200,
    "learning_rate": 1e-3,
    "batch_size": 1024,
}


def configurations() -> dict[str, dict]:
    """label -> model section."""
    dnis = {"name": "dnis", "base": "twotower", "base_params": BASE}

    def uniform(width: int) -> dict:
        widths = [width] * BLOCKS
        return {**dnis, "n_blocks": BLOCKS, "block_dims": {"user": widths, "item": widths}}

    return {
        "full (32)": {"name": "twotower", **BASE},
        "uniform 16": uniform(16),
        "uniform 8": uniform(8),
        "dnis-1": {**dnis, **SEARCH, "keep_ratio": 1.0},
        "dnis-0.5": {**dnis, **SEARCH, "keep_ratio": 0.5},
        "dnis-0.25": {**dnis, **SEARCH, "keep_ratio": 0.25},
    }


def run_config(job: tuple[str, str, dict, list[int]]) -> dict:
    """All seeds of one configuration (a worker process with ``--jobs`` > 1)."""
    dataset, label, model, seeds = job
    torch.set_num_threads(1)
    common = {
        "data": {"name": dataset},
        "split": {"strategy": "ratio", "ratios": [0.8, 0.1, 0.1]},
        "train": {**TRAIN, "num_threads": 1},
        "evaluation": {"topk": [10, 20]},
    }
    with tempfile.TemporaryDirectory(prefix="bench-dnis-tt-") as tmp:
        runs = train_seeds("x", seeds, Path(tmp), model=model, **common)
        kept = _kept_parameters(Path(tmp) / "x")
        for run in runs:
            if run["seed"] in kept:
                run["parameters"] = kept[run["seed"]]
                run["dims"] = _dims(Path(tmp) / "x", run["seed"])
    return {"label": label, "runs": runs}


def run(datasets: list[str], seeds: list[int], jobs: int) -> list[dict]:
    from recsys.config import build_run_config
    from recsys.data.catalog import load_dataset

    jobs_list = [(d, label, m, seeds) for d in datasets for label, m in configurations().items()]
    done = parallel_map(run_config, jobs_list, jobs)
    results = []
    for dataset in datasets:
        data = load_dataset(build_run_config(None, [], data={"name": dataset}).data)
        full_params = (data.n_users + data.n_items) * BASE["feature_dim"]
        models = {}
        for job, entry in zip(jobs_list, done, strict=True):
            if job[0] != dataset:
                continue
            runs = entry["runs"]
            for r in runs:
                r.setdefault("parameters", full_params)
            models[entry["label"]] = {
                "runs": runs,
                "summary": summarize(runs, KEYS),
                "valid": summarize(runs, KEYS, part="valid"),
                "parameters": float(np.mean([r["parameters"] for r in runs])),
            }
        results.append(
            {
                "dataset": dataset,
                "users": data.n_users,
                "items": data.n_items,
                "models": models,
                "verdict": verdict(models),
            }
        )
    return results


def _mean(entry: dict) -> float:
    return entry["summary"][BAR_METRIC]["mean"]


def verdict(models: dict) -> dict:
    full = _mean(models["full (32)"])
    half, uniform = _mean(models["dnis-0.5"]), _mean(models["uniform 16"])
    quarter, uniform8 = _mean(models["dnis-0.25"]), _mean(models["uniform 8"])
    return {
        "full": full,
        "dnis_half_relative": half / full,
        "dnis_half_within_2pct": half >= (1 - TOLERANCE) * full,
        "dnis_half_beats_uniform_16": half > uniform,
        "dnis_quarter_relative": quarter / full,
        "dnis_quarter_within_2pct": quarter >= (1 - TOLERANCE) * full,
        "dnis_quarter_beats_uniform_8": quarter > uniform8,
        "schedule_control_relative": _mean(models["dnis-1"]) / full,
    }


def markdown(results: list[dict], seeds: list[int]) -> str:
    doc = __doc__.split("\n\n")
    lines = ["# " + doc[0], "", doc[1], "", doc[2], ""]
    lines.append(f"Seeds {', '.join(map(str, seeds))}; mean ± std over seeds.")
    for res in results:
        v = res["verdict"]
        lines += [
            "",
            f"## {res['dataset']} ({res['users']} users, {res['items']} items)",
            "",
            "| model | ID parameters | test Recall@20 | of full | valid Recall@20 | "
            "best epochs | widths per block, first seed |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, m in res["models"].items():
            test = m["summary"][BAR_METRIC]
            dims = m["runs"][0].get("dims") or {}
            widths = "; ".join(f"{k} {' '.join(map(str, d))}" for k, d in dims.items())
            epochs = ", ".join(str(r["best_epoch"]) for r in m["runs"])
            lines.append(
                f"| {label} | {m['parameters']:,.0f} | {test['mean']:.4f} ± {test['std']:.4f} | "
                f"{100 * test['mean'] / v['full']:.1f}% | {m['valid'][BAR_METRIC]['mean']:.4f} | "
                f"{epochs} | {widths} |"
            )
        lines += [
            "",
            f"- DNIS at half the ID parameters: {100 * v['dnis_half_relative']:.1f}% of full "
            f"(within 2%: **{v['dnis_half_within_2pct']}**), beats uniform 16: "
            f"**{v['dnis_half_beats_uniform_16']}**",
            f"- DNIS at a quarter: {100 * v['dnis_quarter_relative']:.1f}% of full (within 2%: "
            f"**{v['dnis_quarter_within_2pct']}**), beats uniform 8: "
            f"**{v['dnis_quarter_beats_uniform_8']}**",
            "- schedule control (DNIS, nothing pruned): "
            f"{100 * v['schedule_control_relative']:.1f}% of full",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic-2000x1000x40000"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--jobs", type=int, default=1, help="configurations in parallel")
    parser.add_argument("--name", default="dnis_twotower")
    args = parser.parse_args()
    results = run(args.datasets, args.seeds, args.jobs)
    payload = {"seeds": args.seeds, "results": results}
    write_result(args.name, payload, markdown(results, args.seeds))
    print(markdown(results, args.seeds))


if __name__ == "__main__":
    main()
