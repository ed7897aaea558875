"""Mult-VAE, Mult-DAE, ARD-VAE, EASE and LightGCN on MovieLens-100k under one protocol, 3 seeds.

Protocol: all 100,000 ratings as positives, no filtering; random-order 8:1:1 split per user (as
in accuracy_ml100k); full ranking with training items masked (and for test, validation items);
every model selects its best epoch (or, for EASE, its ridge penalty from a small grid) on
validation NDCG@20; the test metrics of that choice are reported. The seed (2020, 2021, 2022)
sets both the split and the initialisation. Recall@K is hits/|test| (RecBole's); recall_min@K is
hits/min(K, |test|) (the VAE papers').

Settings: the VAEs follow Liang et al. scaled to 943 users: I-600-200-600-I (Mult-DAE I-200-I),
tanh, input dropout 0.5, Adam lr 1e-3, batch 100 users (10 steps per epoch), beta_t =
min(0.2, t / 5000), so the cap is reached at step 1000 (epoch 100; the paper's schedule reaches
it at about 85% of its 200 epochs), up to 300 epochs with patience 30 validations; Mult-DAE's
weight penalty is the paper's 0.01/batch; ARD-VAE is Mult-VAE with the ARD prior re-estimated
every epoch. EASE picks lambda from {50, 100, 200, 500, 1000} per seed on validation. LightGCN
as in accuracy_ml100k (64 dims, 2 layers, reg 1e-4, batch 2048), selected on NDCG@20 here.

With ``--protocol heldout`` the same models (LightGCN excepted: it has per-user embeddings and
cannot score users it never saw; ItemKNN joins as a second fold-in baseline) run under strong
generalisation instead: 100 validation and 100 test users held out, 80% of each held-out user's
items as fold-in and 20% as targets; results go to ``vae_ml100k_heldout``.

    python -m benchmarks.vae_ml100k [--models multvae ...] [--seeds 2020 2021 2022] [--threads 1]
        [--protocol ratio|heldout]
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

KEYS = (
    "recall_at_20",
    "ndcg_at_20",
    "recall_min_at_20",
    "recall_at_10",
    "ndcg_at_10",
    "recall_min_at_10",
)
VAE_TRAIN = {"batch_size": 100, "learning_rate": 1e-3, "epochs": 300, "patience": 30}
VAE = {"anneal_cap": 0.2, "total_anneal_steps": 5000}
MODELS: dict[str, tuple[dict, dict]] = {
    "multvae": ({"name": "multvae", **VAE}, VAE_TRAIN),
    "multdae": ({"name": "multdae", "l2": 0.01 / 100}, VAE_TRAIN),
    "ardvae": ({"name": "ardvae", **VAE}, VAE_TRAIN),
    "ease": ({"name": "ease"}, {}),
    "lightgcn": (
        {"name": "lightgcn", "embedding_size": 64, "n_layers": 2, "reg_weight": 1e-4},
        {"batch_size": 2048, "learning_rate": 1e-3, "epochs": 500, "patience": 10},
    ),
    "itemknn": ({"name": "itemknn", "k": 100}, {}),
}
DEFAULT_MODELS = {
    "ratio": ["multvae", "multdae", "ardvae", "ease", "lightgcn"],
    "heldout": ["multvae", "multdae", "ardvae", "ease", "itemknn"],
}
EASE_GRID = (50.0, 100.0, 200.0, 500.0, 1000.0)
EVAL = {"topk": [10, 20], "metrics": ["recall", "recall_min", "ndcg", "precision"]}
SPLITS = {
    "ratio": {"strategy": "ratio", "ratios": [0.8, 0.1, 0.1]},
    "heldout": {
        "strategy": "heldout_users",
        "heldout_users": [100, 100],
        "foldin_ratio": 0.8,
        "min_heldout_items": 5,
    },
}


def _run_model(
    name: str, seeds: list[int], workdir: Path, threads: int, protocol: str
) -> list[dict]:
    model, train = MODELS[name]
    common = {
        "data": {"name": "ml-100k"},
        "split": SPLITS[protocol],
        "evaluation": EVAL,
        "overrides": [f"train.num_threads={threads}"],
    }
    if name == "ease":
        runs = []
        for seed in seeds:
            grid = [
                train_seeds(
                    f"ease-l{lam:g}",
                    [seed],
                    workdir,
                    model={**model, "l2": lam},
                    train={"valid_metric": "ndcg_at_20"},
                    **common,
                )[0]
                | {"l2": lam}
                for lam in EASE_GRID
            ]
            best = max(grid, key=lambda r: r["valid"]["ndcg_at_20"])
            best["grid_valid_ndcg_at_20"] = {r["l2"]: r["valid"]["ndcg_at_20"] for r in grid}
            runs.append(best)
        return runs
    runs = train_seeds(
        name,
        seeds,
        workdir,
        model=model,
        train={"valid_metric": "ndcg_at_20", **train},
        **common,
    )
    # collapse diagnostics of the selected epoch, from each run's history
    folders = {
        yaml.safe_load((f / "config.yaml").read_text())["train"]["seed"]: f
        for f in (workdir / name).iterdir()
        if (f / "history.json").is_file()
    }
    for run in runs:
        history = json.loads((folders[run["seed"]] / "history.json").read_text())
        best = next((h for h in history if h["epoch"] == run["best_epoch"]), None)
        if best and "active_units" in best:
            run["diagnostics"] = {
                k: best[k]
                for k in ("beta", "kl_total", "active_units", "collapsed_fraction", "relevant_dims")
                if k in best
            }
    return runs


def run(models: list[str], seeds: list[int], threads: int, protocol: str = "ratio") -> dict:
    torch.set_num_threads(threads)
    parts = __doc__.split("\n\n")
    out: dict = {"protocol": parts[1], "settings": parts[2], "split": SPLITS[protocol]}
    if protocol == "heldout":
        out["protocol"] = parts[3]
    out["models"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            runs = _run_model(name, seeds, Path(tmp), threads, protocol)
            out["models"][name] = {
                "config": MODELS[name][0],
                "train": MODELS[name][1],
                "runs": runs,
                "summary": summarize(runs, KEYS),
            }
    return out


def markdown(result: dict) -> str:
    lines = [
        "# MovieLens-100k: VAEs for collaborative filtering beside EASE and LightGCN"
        + (" (strong generalisation)" if result["split"]["strategy"] == "heldout_users" else ""),
        "",
        result["protocol"],
        "",
        result["settings"],
        "",
        "Test metrics, mean ± std over the seeds:",
        "",
        "| model | Recall@20 | NDCG@20 | recall_min@20 | Recall@10 | NDCG@10 | best epochs "
        "| s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["models"].items():
        s = r["summary"]
        cells = [
            f"{s[k]['mean']:.4f} ± {s[k]['std']:.4f}"
            for k in (
                "recall_at_20",
                "ndcg_at_20",
                "recall_min_at_20",
                "recall_at_10",
                "ndcg_at_10",
            )
        ]
        epochs = ", ".join(str(x["best_epoch"]) for x in r["runs"])
        if name == "ease":
            epochs = "lambda " + ", ".join(f"{x['l2']:g}" for x in r["runs"])
        secs = np.mean([x["seconds"] for x in r["runs"]])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {epochs} | {secs:.0f} |")
    diag = [
        (name, x) for name, r in result["models"].items() for x in r["runs"] if "diagnostics" in x
    ]
    if diag:
        lines += [
            "",
            "Collapse diagnostics at the selected epoch (200-dimensional latent):",
            "",
            "| model | seed | beta | KL (nats/user) | active units | collapsed fraction | "
            "ARD relevant dims |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, x in diag:
            d = x["diagnostics"]
            lines.append(
                f"| {name} | {x['seed']} | {d.get('beta', float('nan')):.3f} | "
                f"{d['kl_total']:.2f} | {d['active_units']:.0f} | "
                f"{d['collapsed_fraction']:.3f} | {d.get('relevant_dims', '')} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--protocol", choices=["ratio", "heldout"], default="ratio")
    args = parser.parse_args()
    models = args.models or DEFAULT_MODELS[args.protocol]
    if args.protocol == "heldout" and "lightgcn" in models:
        parser.error("lightgcn cannot score held-out users (it has per-user embeddings)")
    result = run(models, args.seeds, args.threads, args.protocol)
    name = "vae_ml100k" if args.protocol == "ratio" else "vae_ml100k_heldout"
    path = write_result(name, result, markdown(result))
    print(path.read_text())


if __name__ == "__main__":
    main()
