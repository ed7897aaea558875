"""LightGCN on Gowalla-sized data: seconds per epoch, the evaluator against its floor, and the
time to a plateau of validation Recall@20.

Data: the ``gowalla`` card (LightGCN's published train/test files, validation carved out of
train) when its files are in the cache or at ``--data-path``; otherwise synthetic data of the
same shape (29,858 users, 40,981 items, 1,027,370 interactions, power-law popularity), split
8:1:1 per user. LightGCN with 2 layers and embedding 64; the batch size and learning rate are
options, since one full-graph propagation per batch makes big batches the fast setting on CPU.
Training stops when validation Recall@20 has not improved for ``--patience`` evaluations.

    python -m benchmarks.gowalla_lightgcn [--batch-size 32768] [--lr 0.005]

Per-epoch seconds need a quiet machine; epochs to a plateau do not. ``--epochs 4 --eval-every 4
--name gowalla_lightgcn_timing`` measures the epoch time and the evaluator against its floor
alone, in a few minutes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import write_result
from recsys.data.catalog import DataConfig, load_dataset
from recsys.data.split import SplitConfig, make_split
from recsys.data.synthetic import make_synthetic
from recsys.errors import DatasetNotFoundError
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model
from recsys.train.trainer import EpochReport, TrainConfig, Trainer

GOWALLA_SHAPE = (29858, 40981, 1027370)


def load(data_path: Path | None):
    try:
        ds = load_dataset(DataConfig(name="gowalla", path=data_path))
        return ds, make_split(ds, SplitConfig(strategy="given")), "gowalla (published split)"
    except DatasetNotFoundError:
        ds = make_synthetic(*GOWALLA_SHAPE, modalities={}, genres=False, seed=0)
        split = make_split(ds, SplitConfig(strategy="ratio"))
        return ds, split, "synthetic with Gowalla's shape (the gowalla files are not here)"


def floor_seconds(model, split, evaluator: Evaluator) -> float:
    with torch.no_grad():
        users_r, items_r = model.propagate()
    users = torch.from_numpy(np.flatnonzero(np.diff(split.valid.indptr)))
    step = evaluator.user_batch(split.shape[1])
    tic = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(users), step):
            torch.topk(users_r[users[start : start + step]] @ items_r.T, 20, dim=1)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-path", type=Path)
    parser.add_argument("--batch-size", type=int, default=32768)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default: every CPU)")
    parser.add_argument("--name", default="gowalla_lightgcn", help="result file name")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    ds, split, source = load(args.data_path)
    print(source, ds, split, flush=True)
    evaluator = Evaluator(topk=(20,), metrics=("recall", "ndcg"), memory_mb=2048)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        valid_metric="recall_at_20",
        patience=args.patience,
        eval_every=args.eval_every,
        progress=False,
    )
    model = create_model("lightgcn", embedding_size=64, n_layers=2)
    epochs: list[dict] = []

    def record(report: EpochReport) -> None:
        row = {"epoch": report.epoch, "seconds": report.seconds, "loss": report.train["loss"]}
        if report.valid:
            row["valid_recall_at_20"] = report.valid["recall_at_20"]
        epochs.append(row)
        print(row, flush=True)

    trainer = Trainer(model, split, cfg, evaluator, callbacks=[record])
    tic = time.perf_counter()
    result = trainer.fit()
    total_minutes = (time.perf_counter() - tic) / 60

    with torch.no_grad():
        score = model.scorer()  # propagation done once, outside the timing
    tic = time.perf_counter()
    evaluator.evaluate(score, split.valid, [split.train])
    eval_seconds = time.perf_counter() - tic
    floor = floor_seconds(model, split, evaluator)
    # epoch time without evaluation: epochs that did not validate
    train_only = [e["seconds"] for e in epochs if "valid_recall_at_20" not in e]
    epoch_seconds = float(np.median(train_only or [e["seconds"] for e in epochs]))
    test = trainer.evaluate("test")
    payload = {
        "data": source,
        "dataset": repr(ds),
        "split": repr(split),
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "epoch_seconds_median": epoch_seconds,
        "epochs_per_minute": 60 / epoch_seconds,
        "evaluation_seconds": eval_seconds,
        "floor_seconds": floor,
        "evaluation_over_floor": eval_seconds / floor,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "minutes_to_plateau": total_minutes,
        "best_valid_recall_at_20": result.best_valid.get("recall_at_20"),
        "test": test,
        "epochs": epochs,
    }
    md = [
        "# LightGCN on Gowalla-sized data",
        "",
        f"Data: {source}: {ds!r}; {split!r}.  ",
        f"LightGCN 2 layers, embedding 64, batch {args.batch_size}, lr {args.lr}; plateau = "
        f"no gain in validation Recall@20 for {args.patience} evaluations (every "
        f"{args.eval_every} epochs).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| seconds per training epoch (median) | {epoch_seconds:.1f} |",
        f"| epochs per minute | {60 / epoch_seconds:.2f} |",
        f"| evaluator (valid: masking, top-k, metrics) | {eval_seconds:.1f} s |",
        f"| floor: score matmul + top-k, same users | {floor:.1f} s |",
        f"| evaluation / floor | {eval_seconds / floor:.2f} |",
        f"| best epoch / epochs run | {result.best_epoch} / {result.epochs_run} |",
        f"| minutes to plateau (training + validation) | {total_minutes:.1f} |",
        f"| best valid Recall@20 | {result.best_valid.get('recall_at_20', float('nan')):.4f} |",
        f"| test Recall@20 / NDCG@20 | {test['recall_at_20']:.4f} / {test['ndcg_at_20']:.4f} |",
    ]
    path = write_result(args.name, payload, "\n".join(md))
    print(path.read_text())


if __name__ == "__main__":
    main()
