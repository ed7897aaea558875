"""Scaling: seconds per epoch, per full evaluation and peak memory at 1e5, 1e6 and 1e7 interactions.

Synthetic power-law data (``make_synthetic``) with users = n / 50 and items = n / 100, split
8:1:1 per user. Each (size, setting) runs in a fresh subprocess so its peak resident memory
(``ru_maxrss``) is its own. Per setting: one warm-up of 20 batches, then three full training
epochs (sampling included; the median is reported), one full validation pass of the evaluator,
and the floor (the same users'
score matmul plus one top-k at the largest K, nothing else).

Settings: BPR with dense fused Adam (up to 1e6: its step touches the whole table, so its epoch
grows with users x items, not interactions), BPR with lazy ``sparse_adam`` (every size),
LightGCN at batch 8192 (up to 1e6; at 1e7 one full-graph propagation per batch is out of reach
of 2 cores).

Linear scaling is judged by a paired check: for each setting, one process holds the two largest
sizes and alternates one epoch of each for ``--rounds`` rounds; the median of
``epoch(large) / (10 x epoch(small))`` over rounds is the ratio reported.

    python -m benchmarks.scaling [--sizes 1e5 1e6 1e7]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

SETTINGS = {
    "bpr-adam": {"model": "bpr", "optimizer": "adam", "batch_size": 2048, "max_n": 1e6},
    "bpr-sparse_adam": {
        "model": "bpr",
        "optimizer": "sparse_adam",
        "batch_size": 2048,
        "max_n": 1e7,
    },
    "lightgcn": {"model": "lightgcn", "optimizer": "adam", "batch_size": 8192, "max_n": 1e6},
}


EPOCHS = 3
"""Training epochs timed per size and setting; the median is reported."""

PAIRED_ROUNDS = 7
"""Rounds of the paired linear-scaling check (one epoch at each size per round)."""


@dataclass
class Bench:
    """One size and setting, ready to time: data, split, model and the training loop's parts."""

    dataset: Any
    split: Any
    model: Any
    evaluator: Any
    trainer: Any
    sampler: Any
    optimizer: Any
    rng: np.random.Generator
    data_seconds: float

    def epoch(self) -> float:
        """Seconds of one training epoch (sampling, forward, backward, step)."""
        tic = time.perf_counter()
        self.trainer._train_epoch(self.sampler, self.optimizer, self.rng)
        return time.perf_counter() - tic


def prepare(n: int, setting: str) -> Bench:
    """One size and setting built and warmed up with 20 batches."""
    from recsys.data.split import split_ratio
    from recsys.data.synthetic import make_synthetic
    from recsys.eval.evaluator import Evaluator
    from recsys.models.registry import create_model
    from recsys.train.trainer import TrainConfig, Trainer, make_optimizer, train_step

    spec = SETTINGS[setting]
    tic = time.perf_counter()
    ds = make_synthetic(n // 50, n // 100, n, modalities={}, genres=False, seed=0)
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=0)
    data_seconds = time.perf_counter() - tic
    model = create_model(spec["model"])
    cfg = TrainConfig(progress=False, batch_size=spec["batch_size"], optimizer=spec["optimizer"])
    evaluator = Evaluator(topk=(10, 20), memory_mb=1024)
    trainer = Trainer(model, split, cfg, evaluator)
    model.setup(split.train)
    sampler = trainer._sampler()
    optimizer = make_optimizer(model, cfg)
    rng = np.random.default_rng(0)
    for i, batch in enumerate(sampler.epoch(rng)):  # warm-up
        train_step(model, optimizer, batch)
        if i == 20:
            break
    return Bench(ds, split, model, evaluator, trainer, sampler, optimizer, rng, data_seconds)


def measure(n: int, setting: str) -> dict:
    """One size and setting, in this process."""
    spec = SETTINGS[setting]
    bench = prepare(n, setting)
    ds, split, model, evaluator = bench.dataset, bench.split, bench.model, bench.evaluator
    epoch_times = [bench.epoch() for _ in range(EPOCHS)]
    epoch_seconds = float(np.median(epoch_times))
    tic = time.perf_counter()
    bench.trainer.evaluate("valid")
    eval_seconds = time.perf_counter() - tic

    # the floor scores from the same final representations the evaluator used
    with torch.no_grad():
        if spec["model"] == "lightgcn":
            users_r, items_r = model.propagate()
        else:
            r = model.representations()
            users_r, items_r = r["user"].detach(), r["item"].detach()
    eval_users = torch.from_numpy(np.flatnonzero(np.diff(split.valid.indptr)))
    step = evaluator.user_batch(ds.n_items)
    tic = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(eval_users), step):
            batch_users = eval_users[start : start + step]
            torch.topk(users_r[batch_users] @ items_r.T, 20, dim=1)
    floor_seconds = time.perf_counter() - tic
    return {
        "n": n,
        "setting": setting,
        "users": ds.n_users,
        "items": ds.n_items,
        "train_interactions": int(split.train.nnz),
        "data_seconds": bench.data_seconds,
        "epoch_seconds": epoch_seconds,
        "epoch_seconds_all": epoch_times,
        "eval_seconds": eval_seconds,
        "floor_seconds": floor_seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def paired(setting: str, small: int, large: int, rounds: int = PAIRED_ROUNDS) -> dict:
    """Epoch seconds at two sizes, measured alternately in one process.

    Separate runs minutes apart on a shared 2-core machine differ by up to 1.7x for the same
    code (1.36 s and 2.27 s for one 1e6 epoch on the same day), more than the effect being
    measured; alternating one epoch at each size makes every ratio ``large / (k x small)``
    come from the same minute of machine time.
    """
    sides = {n: prepare(n, setting) for n in (small, large)}
    times: dict[int, list[float]] = {small: [], large: []}
    for _ in range(rounds):
        for n, bench in sides.items():
            times[n].append(bench.epoch())
    factor = large / small
    ratios = [b / (factor * a) for a, b in zip(times[small], times[large], strict=True)]
    return {
        "setting": setting,
        "small": small,
        "large": large,
        "train_interactions": {n: int(b.split.train.nnz) for n, b in sides.items()},
        "epoch_seconds": {n: t for n, t in times.items()},
        "ratios": ratios,
        "median_ratio": float(np.median(ratios)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e5, 1e6, 1e7])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--one", nargs=2, metavar=("N", "SETTING"), help=argparse.SUPPRESS)
    parser.add_argument("--pair", nargs=3, metavar=("SETTING", "N", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=PAIRED_ROUNDS, help="paired-check rounds")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(int(float(args.one[0])), args.one[1])), flush=True)
        return
    if args.pair:
        small, large = (int(float(x)) for x in args.pair[1:])
        print(json.dumps(paired(args.pair[0], small, large, args.rounds)), flush=True)
        return

    from benchmarks.common import write_result

    rows = []
    for setting in args.settings:
        for n in args.sizes:
            if n > SETTINGS[setting]["max_n"]:
                continue
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.scaling", "--one", str(int(n)), setting],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                rows.append({"n": int(n), "setting": setting, "error": out.stderr[-2000:]})
                print(setting, int(n), "failed:", out.stderr[-500:], flush=True)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    # the linear-scaling check between the two largest sizes, epochs alternating in one process
    pairs = []
    sizes = sorted(int(n) for n in args.sizes)
    for setting in args.settings:
        reachable = [n for n in sizes if n <= SETTINGS[setting]["max_n"]]
        if len(reachable) < 2:
            continue
        small, large = reachable[-2:]
        command = [sys.executable, "-m", "benchmarks.scaling", "--pair", setting, str(small)]
        command += [str(large), "--rounds", str(args.rounds)]
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(setting, "paired check failed:", out.stderr[-500:], flush=True)
            continue
        pairs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(pairs[-1]), flush=True)
    ok = [r for r in rows if "error" not in r]
    for r in ok:
        base = next(
            (b for b in ok if b["setting"] == r["setting"] and b["n"] == r["n"] // 10), None
        )
        r["epoch_vs_linear_from_previous"] = (
            r["epoch_seconds"] / (base["epoch_seconds"] * 10) if base else None
        )
        r["eval_over_floor"] = r["eval_seconds"] / r["floor_seconds"]
    md = [
        "# Scaling with interactions (synthetic, users = n/50, items = n/100)",
        "",
        "| setting | interactions | users | items | epoch s | epoch / (10 x previous) | "
        "eval s | floor s | eval / floor | peak RSS GB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ok:
        ratio = r["epoch_vs_linear_from_previous"]
        md.append(
            f"| {r['setting']} | {r['n']:.0e} | {r['users']} | {r['items']} | "
            f"{r['epoch_seconds']:.2f} | {'' if ratio is None else f'{ratio:.2f}'} | "
            f"{r['eval_seconds']:.2f} | {r['floor_seconds']:.2f} | {r['eval_over_floor']:.2f} | "
            f"{r['peak_rss_gb']:.2f} |"
        )
    for r in rows:
        if "error" in r:
            md.append(f"\n{r['setting']} at {r['n']:.0e} failed: `{r['error'][-300:]}`")
    if pairs:
        md += [
            "",
            "## Linear scaling, paired",
            "",
            "One process per setting holds both sizes and alternates one training epoch of each, "
            f"{args.rounds} rounds, so each ratio compares epochs from the same minute of machine "
            "time (separate runs on this shared machine drift by up to 1.7x between minutes).",
            "",
            "| setting | sizes | epoch s (small) | epoch s (large) | large / (k x small) per round "
            "| median |",
            "|---|---|---|---|---|---|",
        ]
        for p in pairs:
            small, large = p["epoch_seconds"][str(p["small"])], p["epoch_seconds"][str(p["large"])]
            md.append(
                f"| {p['setting']} | {p['small']:.0e} -> {p['large']:.0e} | "
                f"{', '.join(f'{t:.2f}' for t in small)} | "
                f"{', '.join(f'{t:.2f}' for t in large)} | "
                f"{', '.join(f'{r:.2f}' for r in p['ratios'])} | {p['median_ratio']:.2f} |"
            )
    path = write_result("scaling", {"rows": rows, "paired": pairs}, "\n".join(md))
    print(path.read_text())


if __name__ == "__main__":
    main()
