"""The GPU check of `recsys tune`: a short search with two trials sharing each GPU.

Protocol: BPR-MF on a dataset (default MovieLens-100k; all ratings as positives, random 8:1:1
split), ``--trials`` learning rates as a grid, ``--epochs`` epochs each (no early stopping,
no scheduler), ``--gpus-per-trial`` (default 0.5: two trials per GPU) and one CPU per trial.
Recorded per trial: the torch device it trained on (what the trainable reports: ``cuda:0``
when Ray assigned it a GPU), its Ray node, its time span, and its best validation NDCG@10;
then how many trials surely ran at once (a lower bound: Ray stamps results in whole
seconds). The check passes when every trial trained on a CUDA device and, with fractional
GPUs, at least two trials overlapped in time.

Run it where a GPU is (``--gpus-per-trial 0`` runs the same path on the CPU, to try it out):

    python -m benchmarks.tune_gpu_check [--gpus-per-trial 0.5] [--trials 4] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from benchmarks.common import write_result
from recsys.config import build_run_config
from recsys.tuning.driver import TuneOptions, run_tune
from recsys.tuning.space import parse_space

LEARNING_RATES = [5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2, 6.4e-2]


def _spans(experiment_dir: Path) -> dict[str, tuple[float, float]]:
    """Trial id -> (start, end) in seconds since the epoch, from Ray's per-result records."""
    spans = {}
    for path in (experiment_dir / "ray").glob("trial_*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not rows:
            continue
        end = max(float(row["timestamp"]) for row in rows)
        start = end - max(float(row.get("time_total_s", 0.0)) for row in rows)
        spans[str(rows[-1].get("trial_id", path.parent.name))] = (start, end)
    return spans


def most_at_once(spans: list[tuple[float, float]], resolution_s: float = 0.0) -> int:
    """The largest number of (start, end) intervals that surely overlap at one moment.

    Ray stamps results in whole seconds, so an interval's true position is only known to
    ``resolution_s``: each is shrunk by that much at its start before counting, and one
    shorter than the resolution counts for nothing. The count is then a lower bound (with
    ``--gpus-per-trial 0.5``, raw stamps once gave 3 trials on one GPU, which Ray never runs).
    """
    spans = [(s + resolution_s, e) for s, e in spans if e - s > resolution_s]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def run(
    gpus_per_trial: float,
    trials: int,
    epochs: int,
    dataset: str = "ml-100k",
    address: str | None = None,
) -> dict:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    rates = LEARNING_RATES[:trials]
    with tempfile.TemporaryDirectory(prefix="tune-gpu-") as tmp:
        cfg = build_run_config(
            None,
            ["train.progress=false"],
            model={"name": "bpr"},
            data={"name": dataset},
            train={"epochs": epochs, "patience": epochs, "valid_metric": "ndcg_at_10"},
            tracking={"enabled": False},
            output_dir=tmp,
        )
        space = parse_space(
            {"params": {"train.learning_rate": {"type": "grid", "values": rates}}},
            source="benchmarks/tune_gpu_check.py",
        )
        options = TuneOptions(
            num_samples=1,
            scheduler="none",
            cpus_per_trial=1,
            gpus_per_trial=gpus_per_trial,
            max_failures=0,
            verbose=0,
        )
        outcome = run_tune(cfg, space, options, address=address, name="gpu-check")
        spans = _spans(outcome.experiment_dir)
    rows = [
        {
            "trial_id": t.trial_id,
            "learning_rate": t.params["train.learning_rate"],
            "device": t.device,
            "node_ip": t.node_ip,
            "epochs": t.epochs,
            "best_valid_ndcg_at_10": t.best_value,
            "status": t.status,
            "span_s": spans.get(t.trial_id),
        }
        for t in outcome.trials
    ]
    # Ray's "timestamp" is whole seconds (time_total_s is exact)
    at_once = most_at_once([s for s in spans.values() if s is not None], resolution_s=1.0)
    on_gpu = bool(rows) and all(r["device"].startswith("cuda") for r in rows)
    shared = gpus_per_trial < 1 and at_once >= 2
    return {
        "protocol": __doc__.split("\n\n")[1],
        "dataset": dataset,
        "gpus_per_trial": gpus_per_trial,
        "epochs": epochs,
        "cuda_available": torch.cuda.is_available(),
        "gpu_names": [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())],
        "ray": outcome.ray,
        "trials": rows,
        "most_trials_at_once": at_once,
        "all_trials_on_gpu": on_gpu,
        "check_passed": on_gpu and (shared or gpus_per_trial >= 1),
        "best": {"trial_id": outcome.best.trial_id, "test": outcome.test} if outcome.best else None,
        "seconds": round(outcome.seconds, 1),
    }


def markdown(result: dict) -> str:
    lines = [
        "# `recsys tune` with GPUs: device per trial",
        "",
        result["protocol"],
        "",
        f"Dataset {result['dataset']}, {result['epochs']} epochs per trial, "
        f"--gpus-per-trial {result['gpus_per_trial']:g}; CUDA available to the driver: "
        f"{result['cuda_available']} ({', '.join(result['gpu_names']) or 'no GPU'}); Ray "
        f"resources {result['ray'].get('resources')}.",
        "",
        "| trial | learning rate | device | node | epochs | best valid NDCG@10 | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["trials"]:
        lines.append(
            f"| {r['trial_id']} | {r['learning_rate']:g} | {r['device']} | {r['node_ip']} | "
            f"{r['epochs']} | {r['best_valid_ndcg_at_10']:.4f} | {r['status']} |"
        )
    lines += [
        "",
        f"Most trials running at once: {result['most_trials_at_once']}. Every trial on a CUDA "
        f"device: **{result['all_trials_on_gpu']}**. Check passed: "
        f"**{result['check_passed']}** ({result['seconds']:.0f} s).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus-per-trial", type=float, default=0.5)
    parser.add_argument("--trials", type=int, default=4, choices=range(1, 9))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--address", help="an existing Ray cluster (default: a local Ray)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args.gpus_per_trial, args.trials, args.epochs, args.dataset, args.address)
    name = "tune_gpu_check" if args.gpus_per_trial > 0 else "tune_gpu_check_cpu_dry_run"
    path = write_result(name, result, markdown(result))
    print(path.read_text())


if __name__ == "__main__":
    main()
