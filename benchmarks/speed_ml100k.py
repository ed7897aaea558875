"""Seconds per training epoch and per full evaluation on MovieLens-100k, on this CPU.

Measures, on RecBole's default protocol data (RO 8:1:1, seed 2020):

- one training epoch (sampling included) of BPR and LightGCN (batch 2048, embedding 64,
  2 layers), for LightGCN with both propagation backends (torch sparse CSR and
  torch-geometric's ``LGConv``);
- one full validation pass of the evaluator (masking, top-k, every metric at K = 10, 20);
- the floor: the same users' raw score matmul plus one ``torch.topk``, nothing else.

Each timing is the median of ``--repeats`` runs after one warm-up.

    python -m benchmarks.speed_ml100k [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import numpy as np
import torch

from benchmarks.common import write_result
from recsys.data.catalog import DataConfig, load_dataset
from recsys.data.split import split_ratio
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model
from recsys.train.trainer import TrainConfig, Trainer, make_optimizer

# RecBole 1.2.1 on this machine kind (from the core issue)
RECBOLE_SECONDS = {"bpr_epoch": 0.19, "lightgcn_epoch": 1.29, "evaluation": 0.115}


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def make_trainer(name: str, params: dict, split, evaluator: Evaluator) -> Trainer:
    model = create_model(name, **params)
    model.setup(split.train)
    return Trainer(model, split, TrainConfig(progress=False), evaluator)


def time_epoch(trainer: Trainer, repeats: int) -> float:
    """One training epoch, sampling included."""
    sampler = trainer._sampler()
    optimizer = make_optimizer(trainer.model, trainer.config)
    rng = np.random.default_rng(0)
    return median_time(lambda: trainer._train_epoch(sampler, optimizer, rng), repeats)


def time_evaluator(trainer: Trainer, split, evaluator: Evaluator, repeats: int) -> float:
    """The evaluator alone: the same pass with the model's propagation done beforehand."""
    score = trainer.model.scorer()
    popularity = trainer.item_popularity
    return median_time(
        lambda: evaluator.evaluate(score, split.valid, [split.train], popularity), repeats
    )


def time_floor(trainer: Trainer, split, evaluator: Evaluator, repeats: int) -> float:
    """The same validation users' score matmul plus one top-k at the largest K, nothing else."""
    with torch.no_grad():
        users_f, items_f = trainer.model.propagate()
    eval_users = torch.from_numpy(np.flatnonzero(np.diff(split.valid.indptr)))
    max_k = max(evaluator.cutoffs)

    def floor() -> None:
        with torch.inference_mode():
            for start in range(0, len(eval_users), evaluator.batch_size):
                batch = eval_users[start : start + evaluator.batch_size]
                torch.topk(users_f[batch] @ items_f.T, max_k, dim=1)

    return median_time(floor, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    ds = load_dataset(DataConfig(name="ml-100k"))
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=2020)
    evaluator = Evaluator(topk=(10, 20))
    results: dict[str, float] = {}

    configs = {
        "bpr": {},
        "lightgcn": {"propagation": "sparse"},
        "lightgcn_pyg": {"propagation": "pyg"},
    }
    for label, params in configs.items():
        trainer = make_trainer(label.split("_")[0], params, split, evaluator)
        results[f"{label}_epoch"] = time_epoch(trainer, args.repeats)
        if label == "lightgcn":
            results["evaluation"] = median_time(partial(trainer.evaluate, "valid"), args.repeats)
            results["evaluator_only"] = time_evaluator(trainer, split, evaluator, args.repeats)
            results["floor_matmul_topk"] = time_floor(trainer, split, evaluator, args.repeats)
        print(label, {k: round(v, 4) for k, v in results.items()}, flush=True)

    results["evaluation_over_floor"] = results["evaluator_only"] / results["floor_matmul_topk"]
    speedup = {
        key: RECBOLE_SECONDS[key] / results[key]
        for key in ("bpr_epoch", "lightgcn_epoch", "evaluation")
    }
    best_backend = "sparse" if results["lightgcn_epoch"] <= results["lightgcn_pyg_epoch"] else "pyg"
    payload = {
        "dataset": repr(ds),
        "split": repr(split),
        "seconds": results,
        "recbole_1_2_1_seconds": RECBOLE_SECONDS,
        "speedup_vs_recbole": speedup,
        "faster_lightgcn_backend": best_backend,
        "bars": {
            "evaluation_within_2x_floor": results["evaluation_over_floor"] <= 2.0,
            "bpr_epoch_3x_faster": speedup["bpr_epoch"] >= 3.0,
            "lightgcn_epoch_3x_faster": speedup["lightgcn_epoch"] >= 3.0,
        },
    }
    md = [
        "# MovieLens-100k speed (median of repeats, seconds)",
        "",
        "| measure | recsys | RecBole 1.2.1 | speed-up |",
        "|---|---|---|---|",
        f"| BPR epoch | {results['bpr_epoch']:.4f} | {RECBOLE_SECONDS['bpr_epoch']} | "
        f"{speedup['bpr_epoch']:.1f}x |",
        f"| LightGCN epoch (torch sparse) | {results['lightgcn_epoch']:.4f} | "
        f"{RECBOLE_SECONDS['lightgcn_epoch']} | {speedup['lightgcn_epoch']:.1f}x |",
        f"| LightGCN epoch (PyG LGConv) | {results['lightgcn_pyg_epoch']:.4f} | | |",
        f"| full evaluation of LightGCN (propagation + evaluator, valid, K=10,20) | "
        f"{results['evaluation']:.4f} | {RECBOLE_SECONDS['evaluation']} | "
        f"{speedup['evaluation']:.1f}x |",
        f"| evaluator alone (masking, top-k, all metrics) | {results['evaluator_only']:.4f} | | |",
        f"| floor: score matmul + top-k | {results['floor_matmul_topk']:.4f} | | |",
        "",
        f"Evaluator alone / floor: {results['evaluation_over_floor']:.2f}x (bar: within 2x); "
        "the floor is the same users' score matmul plus one top-k, nothing else.  ",
        f"Faster LightGCN propagation backend here: `{best_backend}` (the default).",
    ]
    path = write_result("speed_ml100k", payload, "\n".join(md))
    print(path.read_text())


if __name__ == "__main__":
    main()
