"""Two-tower retrieval with and without self-supervised item-tower training (Yao et al.).

Variants (the same two-tower model, only the SSL task differs): ``none`` (no SSL), ``rfm``
(random feature masking) and ``cfm`` (correlated feature masking), each with the SSL
temperature given below; the SSL weight alpha of each SSL variant is chosen from
``--ssl-weights`` by mean validation Recall@20 over the seeds (the paper tunes it too).
Metrics: full-ranking Recall@20 and NDCG@20 overall and on the head and tail item slices (tail
= the least popular items, by training popularity, holding 20% of training interactions; on a
slice only the user's held-out items in that slice count as relevant, the ranking is over all
items). Random 8:1:1 split per user; Adam; early stopping on validation Recall@20 (overall),
test metrics at the best validation epoch; mean of seeds, the seed setting the split, the
initialisation and (for synthetic data) the data.

Data: MovieLens-100k (all ratings as positives; item features genre multi-hot, release year
categorical and title text encoded by all-MiniLM-L6-v2 when ``recsys[text]`` is installed; user
features age, gender, occupation) and long-tailed synthetic data (make_synthetic: 2000 users,
1000 items, 20000 interactions, at least 3 per user, Zipf popularity exponent 1.0, choice
temperature 0.25, and informative item features: ``text`` 32-d and ``image`` 16-d projections
of the planted factors plus noise, and the multi-hot ``genre`` of extreme factors; the user
tower has the user id only).

With ``--main-grid`` the main task's settings come first: logQ correction on or off and the
softmax temperature (0.1 or 0.2) of the model without SSL, chosen by mean validation Recall@20
over the seeds; every variant then trains on that main task (a stronger baseline than fixed
settings, chosen without the SSL variants or the test split).

Throughput: training interactions per second of one epoch (sampling, forward, backward, step;
no evaluation) for each variant and for BPR-MF (embedding 64, one negative) on the same split.

    python -m benchmarks.twotower [--seeds 0 1 2] [--threads 1] [--datasets ml-100k synthetic]
        [--ssl-weights 0.1 0.5 1.0] [--main-grid] [--jobs 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import parallel_map, per_seed_rows, summarize, write_result
from recsys.data.catalog import DataConfig, load_dataset
from recsys.data.dataset import Dataset
from recsys.data.features import text_encoder_available
from recsys.data.samplers import make_sampler
from recsys.data.split import Split, split_ratio
from recsys.data.synthetic import make_synthetic
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model
from recsys.train.trainer import TrainConfig, Trainer, make_optimizer, train_step

SYNTHETIC = {
    "n_users": 2000,
    "n_items": 1000,
    "n_interactions": 20000,
    "min_per_user": 3,
    "popularity_exponent": 1.0,
    "temperature": 0.25,
    "modalities": {"text": 32, "image": 16},
}
COMMON = {"embedding_size": 64, "feature_dim": 32, "hidden_sizes": [128], "temperature": 0.1}
SSL = {"ssl_weight": 0.5, "ssl_temperature": 0.1, "ssl_value_dropout": 0.1}
VARIANTS = {"none": {"ssl": "none"}, "rfm": {"ssl": "rfm", **SSL}, "cfm": {"ssl": "cfm", **SSL}}
KEYS = (
    "recall_at_20",
    "ndcg_at_20",
    "recall_at_20_head",
    "recall_at_20_tail",
    "ndcg_at_20_tail",
)
TRAIN = {"learning_rate": 1e-3, "batch_size": 1024, "epochs": 100, "patience": 5}
MAIN_GRID = [
    {"logq_correction": logq, "temperature": t} for t in (0.1, 0.2) for logq in (False, True)
]
"""Main-task settings tried with ``--main-grid`` (on the model without SSL)."""


def load(name: str, seed: int) -> tuple[Dataset, dict]:
    """The dataset and the model's feature options."""
    if name == "ml-100k":
        ds = load_dataset(DataConfig(name="ml-100k"))
        items = ["genre", "release_year"] + (["text"] if text_encoder_available() else [])
        return ds, {"item_features": items, "user_features": ["age", "gender", "occupation"]}
    ds = make_synthetic(**SYNTHETIC, seed=seed)
    return ds, {"item_features": ["text", "image", "genre"], "user_features": []}


def fit(ds: Dataset, split: Split, params: dict, seed: int, train: dict) -> dict:
    cfg = TrainConfig(**train, valid_metric="recall_at_20", seed=seed, progress=False, eval_every=1)
    evaluator = Evaluator(topk=(20,), metrics=("recall", "ndcg"), item_slices=True)
    model = create_model("twotower", **params)
    trainer = Trainer(model, split, cfg, evaluator, dataset=ds)
    tic = time.perf_counter()
    result = trainer.fit()
    test = trainer.evaluate("test")
    return {
        "seed": seed,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "seconds": time.perf_counter() - tic,
        "valid": {k: result.best_valid[k] for k in KEYS},
        "test": {k: test[k] for k in (*KEYS, "n_users_head", "n_users_tail")},
    }


def throughput(ds: Dataset, split: Split, name: str, params: dict, batch: int) -> float:
    """Training interactions per second over one epoch after a warm-up epoch."""
    torch.manual_seed(0)
    model = create_model(name, **params).setup(split.train, ds)
    optimizer = make_optimizer(model, TrainConfig(learning_rate=1e-3))
    sampler = make_sampler(model.batch_kind, split.train, batch)
    rng = np.random.default_rng(0)
    model.train()
    rates = []
    for _ in range(2):
        tic = time.perf_counter()
        for b in sampler.epoch(rng):
            train_step(model, optimizer, b)
        rates.append(split.train.nnz / (time.perf_counter() - tic))
    return float(rates[-1])


def fit_job(job: tuple[str, str, float, int, dict, dict, dict]) -> dict:
    """One (dataset, variant, SSL weight, seed, main-task settings, further SSL settings) run,
    in a worker process when ``--jobs`` > 1."""
    data, variant, weight, seed, train, main, ssl_options = job
    torch.set_num_threads(train["num_threads"])
    ds, features = load(data, seed)
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=seed)
    ssl = (
        VARIANTS[variant]
        if variant == "none"
        else {**VARIANTS[variant], **ssl_options, "ssl_weight": weight}
    )
    params = {**COMMON, **main, **features, **ssl}
    r = fit(ds, split, params, seed, train)
    t = r["test"]
    print(
        f"{data} {variant} alpha {weight} {main} seed {seed}: "
        f"valid R@20 {r['valid']['recall_at_20']:.4f} "
        f"test R@20 {t['recall_at_20']:.4f} tail {t['recall_at_20_tail']:.4f} "
        f"best epoch {r['best_epoch']} ({r['seconds']:.0f} s)",
        flush=True,
    )
    return {**r, "params": params}


def _mean_valid(runs: list[dict]) -> float:
    return float(np.mean([r["valid"]["recall_at_20"] for r in runs]))


def run(
    datasets: list[str],
    seeds: list[int],
    train: dict,
    weights: list[float],
    jobs: int = 1,
    main_grid: list[dict] | None = None,
    ssl_options: dict | None = None,
) -> dict:
    """Every (variant, SSL weight, seed) run; per SSL variant, the weight with the best mean
    validation Recall@20 is the one reported (the ``none`` variant has no weight). With
    ``main_grid``, the main-task settings of the ``none`` variant are chosen first, the same
    way, and every variant uses them. ``ssl_options`` are further settings of the SSL
    variants (e.g. ``ssl_mask_size``)."""
    ssl_options = ssl_options or {}
    out: dict = {
        "protocol": __doc__.split("\n\n")[:5],
        "train": train,
        "ssl_weights": weights,
        "ssl_options": ssl_options,
        "datasets": {},
    }
    for data in datasets:
        entry: dict = {"variants": {}, "sweep": {}}
        main: dict = {}
        results: list[dict] = []
        grid: list[tuple] = []
        if main_grid:
            first = [
                (data, "none", 0.0, seed, train, m, ssl_options)
                for m in main_grid
                for seed in seeds
            ]
            runs = parallel_map(fit_job, first, jobs)
            by_main = [
                [r for job, r in zip(first, runs, strict=True) if job[5] == m] for m in main_grid
            ]
            entry["main_sweep"] = [
                {
                    "settings": m,
                    "valid": summarize(rs, KEYS, part="valid"),
                    "test": summarize(rs, KEYS),
                }
                for m, rs in zip(main_grid, by_main, strict=True)
            ]
            best = max(range(len(main_grid)), key=lambda i: _mean_valid(by_main[i]))
            main = main_grid[best]
            grid += [job for job in first if job[5] == main]
            results += by_main[best]
        entry["main"] = main
        rest = [
            (data, v, w, seed, train, main, ssl_options)
            for v in VARIANTS
            for w in ([0.0] if v == "none" else weights)
            for seed in seeds
            if not (main_grid and v == "none")
        ]
        grid += rest
        results += parallel_map(fit_job, rest, jobs)
        for variant in VARIANTS:
            by_weight = {
                w: [r for job, r in zip(grid, results, strict=True) if job[1:3] == (variant, w)]
                for w in ([0.0] if variant == "none" else weights)
            }
            sweep = {
                w: {
                    "valid": summarize(runs, KEYS, part="valid"),
                    "test": summarize(runs, KEYS),
                }
                for w, runs in by_weight.items()
            }
            chosen = max(sweep, key=lambda w: sweep[w]["valid"]["recall_at_20"]["mean"])
            runs = by_weight[chosen]
            entry["sweep"][variant] = sweep
            entry["variants"][variant] = {
                "params": runs[0]["params"],
                "ssl_weight": None if variant == "none" else chosen,
                "runs": runs,
                "summary": sweep[chosen]["test"],
            }
        ds, features = load(data, seeds[0])
        split = split_ratio(ds, (0.8, 0.1, 0.1), seed=seeds[0])
        batch = train["batch_size"]
        rates = {
            f"twotower_{v}": throughput(ds, split, "twotower", e["params"], batch)
            for v, e in entry["variants"].items()
        }
        rates["bpr"] = throughput(ds, split, "bpr", {"embedding_size": 64}, batch)
        entry["throughput"] = rates
        entry["features"] = features
        stats = ds.stats()
        entry["data"] = {k: stats[k] for k in ("users", "items", "interactions")}
        entry["train_interactions"] = int(split.train.nnz)
        m = {v: e["summary"] for v, e in entry["variants"].items()}
        entry["verdict"] = {
            "cfm_minus_none_tail_recall_at_20": m["cfm"]["recall_at_20_tail"]["mean"]
            - m["none"]["recall_at_20_tail"]["mean"],
            "cfm_minus_none_recall_at_20": m["cfm"]["recall_at_20"]["mean"]
            - m["none"]["recall_at_20"]["mean"],
            "rfm_minus_none_tail_recall_at_20": m["rfm"]["recall_at_20_tail"]["mean"]
            - m["none"]["recall_at_20_tail"]["mean"],
            "rfm_minus_none_recall_at_20": m["rfm"]["recall_at_20"]["mean"]
            - m["none"]["recall_at_20"]["mean"],
        }
        v = entry["verdict"]
        entry["verdict"]["bar_met"] = bool(
            v["cfm_minus_none_tail_recall_at_20"] > 0 and v["cfm_minus_none_recall_at_20"] >= 0
        )
        out["datasets"][data] = entry
    return out


def _slice_users(run: dict) -> str:
    """Test users with a held-out item in the head / tail slice."""
    return f"{run['test']['n_users_head']}/{run['test']['n_users_tail']}"


def _main_lines(entry: dict) -> list[str]:
    """The main-task selection table (``--main-grid`` runs only)."""
    if not entry.get("main_sweep"):
        return []
    lines = [
        f"Main task chosen on validation (model without SSL): {entry['main']}",
        "",
        "| logQ correction | temperature | valid R@20 | test R@20 | test R@20 tail |",
        "|---|---|---|---|---|",
    ]
    for row in entry["main_sweep"]:
        m, v, t = row["settings"], row["valid"], row["test"]
        bold = "**" if m == entry["main"] else ""
        lines.append(
            f"| {bold}{m['logq_correction']}{bold} | {m['temperature']:g} | "
            f"{v['recall_at_20']['mean']:.4f} | {t['recall_at_20']['mean']:.4f} | "
            f"{t['recall_at_20_tail']['mean']:.4f} |"
        )
    return [*lines, ""]


def markdown(result: dict) -> str:
    lines = ["# Two-tower: no SSL vs SSL-RFM vs SSL-CFM (mean ± std over seeds, test)", ""]
    lines += [*result["protocol"][1:], ""]
    lines.append(f"Training: {result['train']}")
    if result.get("ssl_options"):
        lines.append(f"\nSSL options of the rfm and cfm variants: {result['ssl_options']}")
    for data, entry in result["datasets"].items():
        lines += [
            "",
            f"## {data}",
            "",
            f"Data: {entry['data']}; model features: {entry['features']}",
            "",
            "| variant | alpha | R@20 | N@20 | R@20 head | R@20 tail | N@20 tail | best epochs "
            "| s/run |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for variant, e in entry["variants"].items():
            s = e["summary"]
            cells = [f"{s[k]['mean']:.4f} ± {s[k]['std']:.4f}" for k in KEYS]
            order = [cells[0], cells[1], cells[2], cells[3], cells[4]]
            epochs = ", ".join(str(r["best_epoch"]) for r in e["runs"])
            secs = np.mean([r["seconds"] for r in e["runs"]])
            alpha = "" if e["ssl_weight"] is None else f"{e['ssl_weight']:g}"
            lines.append(
                f"| {variant} | {alpha} | " + " | ".join(order) + f" | {epochs} | {secs:.0f} |"
            )
        v = entry["verdict"]
        lines += [
            "",
            f"CFM − none: tail R@20 {v['cfm_minus_none_tail_recall_at_20']:+.4f}, overall R@20 "
            f"{v['cfm_minus_none_recall_at_20']:+.4f}; RFM − none: tail "
            f"{v['rfm_minus_none_tail_recall_at_20']:+.4f}, overall "
            f"{v['rfm_minus_none_recall_at_20']:+.4f}. Bar (CFM better on the tail and at least "
            f"as good overall): {'met' if v['bar_met'] else 'not met'}.",
            "",
            f"Training throughput ({entry['train_interactions']} training interactions, batch "
            f"{result['train']['batch_size']}, interactions/s): "
            + ", ".join(f"{k} {r:,.0f}" for k, r in entry["throughput"].items()),
            "",
            *_main_lines(entry),
            "SSL weight alpha per variant, chosen by mean validation Recall@20 over the seeds "
            "(test columns for every alpha, for transparency; the chosen one is in bold):",
            "",
            "| variant | alpha | valid R@20 | test R@20 | test R@20 tail |",
            "|---|---|---|---|---|",
            *[
                f"| {variant} | {'**' if w == entry['variants'][variant]['ssl_weight'] else ''}"
                f"{w:g}{'**' if w == entry['variants'][variant]['ssl_weight'] else ''} | "
                f"{sw['valid']['recall_at_20']['mean']:.4f} | "
                f"{sw['test']['recall_at_20']['mean']:.4f} | "
                f"{sw['test']['recall_at_20_tail']['mean']:.4f} |"
                for variant, by_w in entry["sweep"].items()
                if variant != "none"
                for w, sw in by_w.items()
            ],
            "",
            "Per seed (test):",
            "",
            *per_seed_rows(
                entry["variants"],
                {
                    "R@20": "recall_at_20",
                    "R@20 head": "recall_at_20_head",
                    "R@20 tail": "recall_at_20_tail",
                },
                {"users head/tail": _slice_users},
                label="variant",
            ),
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic"])
    parser.add_argument("--epochs", type=int, default=TRAIN["epochs"])
    parser.add_argument("--name", default="twotower", help="result file name")
    parser.add_argument(
        "--ssl-weights",
        nargs="+",
        type=float,
        default=[SSL["ssl_weight"]],
        help="SSL weights alpha to try per SSL variant; the best by validation is reported",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument(
        "--main-grid",
        action="store_true",
        help="choose logQ correction and temperature of the no-SSL model on validation first",
    )
    parser.add_argument(
        "--ssl-mask-size",
        choices=["seed_plus_half", "half"],
        default="seed_plus_half",
        help="model.ssl_mask_size of the SSL variants",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = {**TRAIN, "epochs": args.epochs, "num_threads": args.threads}
    grid = MAIN_GRID if args.main_grid else None
    options = {"ssl_mask_size": args.ssl_mask_size}
    result = run(args.datasets, args.seeds, train, args.ssl_weights, args.jobs, grid, options)
    path = write_result(args.name, result, markdown(result))
    print(path.read_text())


if __name__ == "__main__":
    main()
