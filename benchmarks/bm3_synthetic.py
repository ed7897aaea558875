"""BM3 against LightGCN on planted data whose item modalities carry the items' latent factors.

Data: ``make_synthetic(2000 users, 1000 items, 20000 interactions, min_per_user=3)`` with the
generator's defaults otherwise (8 planted factors, Zipf popularity exponent 1, temperature 0.5,
modalities ``text`` (64-d) and ``image`` (32-d) = factors x random projection + 0.1 noise, and a
multi-hot ``genre`` of extreme factors). Activity is log-normal above a floor of 3, so most
users are sparse (median 7 interactions, 5 in training). Random 8:1:1 split per user; full
ranking; Adam lr 1e-3, batch 2048; early stopping on validation Recall@20 with patience 20 (or
``--patience``), at most 300 epochs (``--epochs``); test metrics at the best validation epoch.
The seed sets the data, the split and the initialisation. BM3's validation recall can stall for
tens of epochs before it rises again (the bootstrap losses settle first), so ``--patience 300``
(train every model the full 300 epochs, select the best epoch) is the protocol that does not
cut it short; the same patience applies to every model.

Models: LightGCN (2 layers, reg 1e-4, one uniform negative); BM3 with the paper's defaults
(1 layer, dropout 0.5, reg 0.1, cl_weight 2) and every modality (text, image, genre); the same
BM3 with its modalities removed (``modalities=[]``, the ID-only form).

With ``--grid`` each model is instead tuned the way the BM3 paper tunes it: every configuration
of its grid is trained on every seed, and the configuration with the best mean validation
Recall@20 is reported (test metrics at its best validation epochs). BM3 and its ID-only form
use the paper's grid (``n_layers`` {1, 2} x ``dropout`` {0.3, 0.5} x ``reg_weight``
{0.1, 0.01}, cl_weight 2); LightGCN uses ``n_layers`` {1, 2, 3} x ``reg_weight``
{1e-5, 1e-4, 1e-3} (its paper's choice, 1e-4, in the middle).

``--configs-from NAME`` trains, for each model, the configuration that the grid run recorded
in ``results/NAME.json`` chose; with seeds the grid did not see, that measures the chosen
configurations without the selection's optimism.

    python -m benchmarks.bm3_synthetic [--seeds 0 1 2] [--threads 1] [--patience 20]
        [--epochs 300] [--jobs 1] [--grid | --configs-from NAME] [--name bm3_synthetic]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks.common import RESULTS, parallel_map, per_seed_rows, summarize, write_result
from recsys.data.split import split_ratio
from recsys.data.synthetic import make_synthetic
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model
from recsys.train.trainer import TrainConfig, Trainer

DATA = {"n_users": 2000, "n_items": 1000, "n_interactions": 20000, "min_per_user": 3}
MODELS = {
    "lightgcn": ("lightgcn", {"n_layers": 2, "reg_weight": 1e-4}),
    "bm3": ("bm3", {}),
    "bm3_no_modalities": ("bm3", {"modalities": []}),
}
_BM3_GRID = [
    {"n_layers": layers, "dropout": dropout, "reg_weight": reg}
    for layers in (1, 2)
    for dropout in (0.3, 0.5)
    for reg in (0.1, 0.01)
]
GRIDS = {
    "lightgcn": [
        {"n_layers": layers, "reg_weight": reg}
        for layers in (1, 2, 3)
        for reg in (1e-5, 1e-4, 1e-3)
    ],
    "bm3": _BM3_GRID,
    "bm3_no_modalities": [{**params, "modalities": []} for params in _BM3_GRID],
}
KEYS = ("recall_at_20", "ndcg_at_20", "recall_at_10", "ndcg_at_10")
SLICE_KEYS = ("recall_at_20_head", "recall_at_20_tail")
"""Recall@20 on the head and tail item slices (tail: the least popular items holding 20% of
training interactions), where modality features should matter most (results recorded before
the slices were added lack them)."""


def fit(
    model: str,
    seed: int,
    threads: int,
    epochs: int = 300,
    patience: int = 20,
    params: dict | None = None,
) -> dict:
    """Train ``model`` (a key of ``MODELS``, with ``params`` replacing its parameters when
    given) on the planted data of ``seed``; test metrics at the best validation epoch."""
    torch.set_num_threads(threads)
    ds = make_synthetic(**DATA, seed=seed)
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=seed)
    name, defaults = MODELS[model]
    params = defaults if params is None else params
    cfg = TrainConfig(
        epochs=epochs,
        patience=patience,
        valid_metric="recall_at_20",
        seed=seed,
        progress=False,
        num_threads=threads,
    )
    evaluator = Evaluator(topk=(10, 20), metrics=("recall", "ndcg"), item_slices=True)
    trainer = Trainer(create_model(name, **params), split, cfg, evaluator, dataset=ds)
    tic = time.perf_counter()
    result = trainer.fit()
    test = trainer.evaluate("test")
    r = {
        "seed": seed,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "seconds": time.perf_counter() - tic,
        "valid_recall_at_20": result.best_valid["recall_at_20"],
        "test": {k: test[k] for k in KEYS + SLICE_KEYS},
    }
    print(
        f"{model} {params} seed {seed}: test R@20 {r['test']['recall_at_20']:.4f} "
        f"N@20 {r['test']['ndcg_at_20']:.4f} best epoch {r['best_epoch']} "
        f"({r['seconds']:.0f} s)",
        flush=True,
    )
    return r


def _fit_job(job: tuple) -> dict:
    return fit(*job)


def configurations(grid: bool, configs_from: str | None = None) -> dict[str, list[dict]]:
    """Model key -> the parameter sets to train: its grid, the one a recorded grid run chose
    (``results/<configs_from>.json``), or its defaults."""
    if grid:
        return GRIDS
    if not configs_from:
        return {model: [params] for model, (_, params) in MODELS.items()}
    path = RESULTS / f"{configs_from}.json"
    if not path.is_file():
        raise SystemExit(f"--configs-from {configs_from}: no recorded result {path}")
    recorded = json.loads(path.read_text()).get("models", {})
    # a grid run of this benchmark records each model's grid beside the chosen parameters
    missing = [model for model in MODELS if "grid" not in recorded.get(model, {})]
    if missing:
        raise SystemExit(
            f"--configs-from {configs_from}: {path} is not a --grid run of this benchmark "
            f"(no grid choice for {', '.join(missing)})"
        )
    return {model: [recorded[model]["params"]] for model in MODELS}


def run(
    seeds: list[int],
    threads: int,
    epochs: int = 300,
    patience: int = 20,
    jobs: int = 1,
    grid: bool = False,
    configs_from: str | None = None,
) -> dict:
    ds = make_synthetic(**DATA, seed=seeds[0])
    stats = ds.stats()
    out: dict = {
        # the data and model paragraphs, then the grid's or the chosen configurations' one
        "protocol": [
            paragraph
            for k, paragraph in enumerate(__doc__.split("\n\n"))
            if k in (1, 2) or (k == 3 and grid) or (k == 4 and configs_from)
        ],
        "data": {**DATA, **{k: stats[k] for k in ("median_per_user", "median_per_item")}},
        "training": {"epochs": epochs, "patience": patience},
        "models": {},
    }
    configs = configurations(grid, configs_from)
    if configs_from:
        out["configs_from"] = configs_from
    jobs_list = [
        (model, seed, threads, epochs, patience, params)
        for model, grid_ in configs.items()
        for params in grid_
        for seed in seeds
    ]
    results = parallel_map(_fit_job, jobs_list, jobs)
    for model, grid_ in configs.items():
        candidates = []
        for params in grid_:
            runs = [
                r
                for job, r in zip(jobs_list, results, strict=True)
                if job[0] == model and job[5] == params
            ]
            valid = float(np.mean([r["valid_recall_at_20"] for r in runs]))
            candidates.append({"params": params, "valid_recall_at_20": valid, "runs": runs})
        # the configuration a user would pick: best mean validation Recall@20 over the seeds
        chosen = max(candidates, key=lambda c: c["valid_recall_at_20"])
        out["models"][model] = {
            "params": chosen["params"],
            "runs": chosen["runs"],
            "summary": summarize(chosen["runs"], KEYS + SLICE_KEYS),
        }
        if grid:
            out["models"][model]["grid"] = [
                {
                    "params": c["params"],
                    "valid_recall_at_20": c["valid_recall_at_20"],
                    "test_recall_at_20": summarize(c["runs"], KEYS)["recall_at_20"]["mean"],
                }
                for c in candidates
            ]
    m = {k: v["summary"]["recall_at_20"]["mean"] for k, v in out["models"].items()}
    margin = m["bm3"] - m["lightgcn"]
    kept = m["bm3_no_modalities"] - m["lightgcn"]
    out["verdict"] = {
        "bm3_minus_lightgcn": margin,
        "bm3_no_modalities_minus_lightgcn": kept,
        "share_of_margin_lost_without_modalities": (margin - kept) / margin if margin else None,
        "bm3_beats_lightgcn": margin > 0,
        "paired": {
            f"bm3_minus_{other}": _paired(out["models"]["bm3"], out["models"][other])
            for other in ("lightgcn", "bm3_no_modalities")
        },
        "paired_tail": {
            f"bm3_minus_{other}": _paired(
                out["models"]["bm3"], out["models"][other], "recall_at_20_tail"
            )
            for other in ("lightgcn", "bm3_no_modalities")
        },
    }
    return out


def _paired(model: dict, other: dict, key: str = "recall_at_20") -> dict:
    """Per-seed differences of test ``key`` between ``model`` and ``other`` (same seed, same
    data and split): mean, standard error (sample std / sqrt(n)) and the number of seeds where
    it is positive."""
    theirs = {r["seed"]: r["test"][key] for r in other["runs"]}
    diffs = np.array([r["test"][key] - theirs[r["seed"]] for r in model["runs"]])
    se = float(diffs.std(ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else None
    return {
        "mean": float(diffs.mean()),
        "standard_error": se,
        "positive": int((diffs > 0).sum()),
        "seeds": len(diffs),
    }


def markdown(result: dict) -> str:
    v = result["verdict"]
    slices = all(key in r["summary"] for r in result["models"].values() for key in SLICE_KEYS)
    lines = [
        "# BM3 vs LightGCN on planted multimodal data (mean of seeds)",
        "",
        *result["protocol"],
        "",
        f"Data: {result['data']}",
        "",
        f"Training: {result.get('training', {'epochs': 300, 'patience': 20})}",
        "",
        "| model | parameters | Recall@20 (mean ± std) | NDCG@20 (mean ± std) | "
        + ("Recall@20 head | Recall@20 tail | " if slices else "")
        + "best epochs | s/run |",
        "|---|---|---|---|" + ("---|---|" if slices else "") + "---|---|",
    ]
    for model, r in result["models"].items():
        s = r["summary"]
        epochs = ", ".join(str(x["best_epoch"]) for x in r["runs"])
        secs = np.mean([x["seconds"] for x in r["runs"]])
        sliced = "".join(f"{s[key]['mean']:.4f} | " for key in SLICE_KEYS) if slices else ""
        lines.append(
            f"| {model} | {_params_text(r['params'])} | {s['recall_at_20']['mean']:.4f} ± "
            f"{s['recall_at_20']['std']:.4f} | {s['ndcg_at_20']['mean']:.4f} ± "
            f"{s['ndcg_at_20']['std']:.4f} | {sliced}{epochs} | {secs:.0f} |"
        )
    share = v["share_of_margin_lost_without_modalities"]
    lines += [
        "",
        f"BM3 − LightGCN: {v['bm3_minus_lightgcn']:+.4f} Recall@20; BM3 without modalities − "
        f"LightGCN: {v['bm3_no_modalities_minus_lightgcn']:+.4f}"
        + (f" (share of the margin lost without modalities: {share:.0%})" if share else ""),
        "",
        *_paired_rows(v),
        *_paired_rows(v, "paired_tail", "on the tail slice"),
        *_grid_rows(result),
        "Per seed (test):",
        "",
        *per_seed_rows(
            result["models"],
            {
                "R@20": "recall_at_20",
                "N@20": "ndcg_at_20",
                "R@10": "recall_at_10",
                "N@10": "ndcg_at_10",
                **({"R@20 head": SLICE_KEYS[0], "R@20 tail": SLICE_KEYS[1]} if slices else {}),
            },
        ),
    ]
    return "\n".join(lines)


def _paired_rows(verdict: dict, entry: str = "paired", where: str = "") -> list[str]:
    """One line per paired comparison of ``verdict[entry]``, when the result has them."""
    lines = []
    for key, d in verdict.get(entry, {}).items():
        se = f", standard error {d['standard_error']:.4f}" if d["standard_error"] else ""
        lines.append(
            f"Paired per seed{' ' + where if where else ''}, {key.replace('_minus_', ' − ')}: "
            f"{d['mean']:+.4f}{se}, positive in {d['positive']} of {d['seeds']} seeds  "
        )
    return [*lines, ""] if lines else []


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if k != "modalities") or "defaults"


def _grid_rows(result: dict) -> list[str]:
    """The grid search, when there was one: each configuration's mean validation and test
    Recall@20, the chosen one in bold."""
    models = {k: r for k, r in result["models"].items() if "grid" in r}
    if not models:
        return []
    lines = [
        "Grid (mean over seeds; the row chosen on validation in bold):",
        "",
        "| model | parameters | valid Recall@20 | test Recall@20 |",
        "|---|---|---|---|",
    ]
    for model, r in models.items():
        for c in r["grid"]:
            mark = "**" if c["params"] == r["params"] else ""
            lines.append(
                f"| {model} | {mark}{_params_text(c['params'])}{mark} | "
                f"{c['valid_recall_at_20']:.4f} | {c['test_recall_at_20']:.4f} |"
            )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument(
        "--grid", action="store_true", help="tune each model on validation over its grid"
    )
    parser.add_argument(
        "--configs-from",
        metavar="NAME",
        help="train the configurations chosen by the grid run recorded as results/NAME.json",
    )
    parser.add_argument("--name", default="bm3_synthetic", help="result file name")
    args = parser.parse_args()
    if args.grid and args.configs_from:
        parser.error("--grid and --configs-from are exclusive")
    torch.set_num_threads(args.threads)
    result = run(
        args.seeds,
        args.threads,
        args.epochs,
        args.patience,
        args.jobs,
        args.grid,
        args.configs_from,
    )
    path = write_result(args.name, result, markdown(result))
    print(path.read_text())


if __name__ == "__main__":
    main()
