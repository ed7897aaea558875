"""Is DNIS's cell-level pruning why it loses to uniform width 32? Per-entry pruning, measured.

``recsys``'s DNIS prunes at the granularity of its selection matrix: a cell (frequency block s,
dimension k) is kept or dropped for every row of the block, so a block has one width and the
model is stored as per-block tables (issue 5 asks for that). The paper's rule is finer: zero
every entry of the soft-selected table alpha * E whose magnitude is under one threshold, so
each row keeps its own count and set of columns (core-methods.md 2.5). Unstructured magnitude
pruning is the more flexible of the two, so if cell granularity were what costs DNIS its bar
(at half the ID-embedding parameters: within 2% of full width and better than uniform width
32), per-entry pruning should recover it. This study prunes per entry, at the same budgets:

- ``magnitude``: the trained full-width BPR-MF (K = 64), entries of smallest |E| zeroed;
- ``dnis``: DNIS's warm start and search (nothing pruned: keep ratio 1, no fine-tuning; its
  best validation epoch, alpha folded in), entries of smallest |alpha * E| zeroed;

one global threshold over the user and item tables together (the paper's single ID space);
then each pruned model is fine-tuned with its zeros fixed (their gradients masked, fresh Adam)
until early stopping. Parameters are the non-zero entries (index storage not counted, which
favours per-entry pruning). Beside them: BPR-MF at widths 64 and 32 trained from scratch, and
the searched DNIS state before pruning (``dnis search``: warm start and search are 30 epochs,
fewer than BPR-MF needs to converge here, so per-entry pruning of it starts further behind;
its fine-tuning continues the training).

Protocol as ``benchmarks/dnis.py``: random 8:1:1 split per user, BPR-MF (Adam lr 2e-3, batch
2048, one uniform negative), best epoch on validation Recall@20 (patience 10), test once,
3 seeds (split and initialisation); DNIS with 10 equal frequency blocks per table and the
benchmark's search settings.

    python -m benchmarks.dnis_entry_pruning [--datasets ml-100k synthetic-2000x1000x40000] \
        [--ratios 0.5] [--seeds 2020 2021 2022]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import Tensor

from benchmarks.common import summarize, write_result
from benchmarks.dnis import BAR_METRIC, DNIS_PARAMS, FULL, KEYS, LEARNING_RATE, TOLERANCE
from recsys.config import TrainConfig
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.models.base import Recommender

HALF = FULL // 2


def _train_config(seed: int) -> TrainConfig:

    return TrainConfig(
        valid_metric=BAR_METRIC,
        patience=10,
        epochs=500,
        learning_rate=LEARNING_RATE,
        batch_size=2048,
        progress=False,
        num_threads=1,
        seed=seed,
    )


def _fit(model: Recommender, split: Split, seed: int) -> dict:
    """Train ``model`` (set up or not) to its best validation epoch; its test metrics."""
    from recsys.eval.evaluator import Evaluator
    from recsys.train.trainer import Trainer

    tic = time.perf_counter()
    trainer = Trainer(model, split, _train_config(seed), Evaluator(topk=[10, 20]))
    fit = trainer.fit()
    test = trainer.evaluate("test")
    return {
        "test": {k: test[k] for k in KEYS},
        "valid": {k: fit.best_valid[k] for k in KEYS},
        "best_epoch": fit.best_epoch,
        "seconds": time.perf_counter() - tic,
    }


def prune_entries(tables: list[Tensor], keep_ratio: float) -> list[Tensor]:
    """0/1 masks keeping the ``keep_ratio`` largest-magnitude entries of all ``tables``
    together (one threshold; ties at the threshold are dropped)."""
    magnitudes = torch.cat([t.detach().abs().flatten() for t in tables])
    n_drop = round((1.0 - keep_ratio) * magnitudes.numel())
    if n_drop == 0:
        return [torch.ones_like(t) for t in tables]
    threshold = magnitudes.kthvalue(n_drop).values
    return [(t.detach().abs() > threshold).to(t.dtype) for t in tables]


def finetune_pruned(
    user: Tensor, item: Tensor, keep_ratio: float, split: Split, ds: Dataset, seed: int
) -> dict:
    """BPR-MF from the given tables, pruned per entry, fine-tuned with the zeros fixed."""
    from recsys.models.registry import create_model

    model = create_model("bpr", embedding_size=FULL).setup(split.train, ds)
    tables = [model.user_embedding.weight, model.item_embedding.weight]
    masks = prune_entries([user, item], keep_ratio)
    with torch.no_grad():
        for table, source, mask in zip(tables, [user, item], masks, strict=True):
            table.copy_(source * mask)
    # a masked gradient and a fresh Adam state (zero moments) leave a zeroed entry at zero
    hooks = [t.register_hook(lambda g, m=m: g * m) for t, m in zip(tables, masks, strict=True)]
    try:
        out = _fit(model, split, seed + 1000)
    finally:
        for hook in hooks:
            hook.remove()
    for table, mask in zip(tables, masks, strict=True):
        assert not bool((table.detach() * (1 - mask)).any()), "a pruned entry moved"
    out["parameters"] = int(sum(int(m.sum()) for m in masks))
    widths = [m.sum(1) for m in masks]
    out["row_widths"] = {
        role: {"mean": float(w.mean()), "min": int(w.min()), "max": int(w.max())}
        for role, w in zip(("user", "item"), widths, strict=True)
    }
    return out


def run_dataset(dataset: str, seeds: list[int], ratios: list[float]) -> dict:
    from recsys.config import DataConfig
    from recsys.data.catalog import load_dataset
    from recsys.data.split import split_ratio
    from recsys.models.registry import create_model

    ds = load_dataset(DataConfig(name=dataset))
    rows = ds.n_users + ds.n_items
    runs: dict[str, list[dict]] = {}
    for seed in seeds:
        split = split_ratio(ds, (0.8, 0.1, 0.1), seed=seed)
        for width in (FULL, HALF):
            torch.manual_seed(seed)
            model = create_model("bpr", embedding_size=width)
            run = _fit(model, split, seed)
            run["parameters"] = rows * width
            runs.setdefault(f"bpr-{width}", []).append({"seed": seed, **run})
            if width == FULL:
                full_tables = [
                    model.user_embedding.weight.detach().clone(),
                    model.item_embedding.weight.detach().clone(),
                ]
        torch.manual_seed(seed)
        search = create_model(
            "dnis",
            base="bpr",
            base_params={"embedding_size": FULL},
            **{**DNIS_PARAMS, "keep_ratio": 1.0, "finetune": False},
        )
        searched = _fit(search, split, seed)
        searched["parameters"] = rows * FULL
        runs.setdefault("dnis search (nothing pruned)", []).append({"seed": seed, **searched})
        # the saved state is compact at full width: its tables are alpha * E
        dnis_tables = [
            search.base.user_embedding.weight.detach().clone(),
            search.base.item_embedding.weight.detach().clone(),
        ]
        for ratio in ratios:
            for label, source in (("magnitude", full_tables), ("dnis", dnis_tables)):
                run = finetune_pruned(*source, ratio, split, ds, seed)
                runs.setdefault(f"{label}-entry-{ratio:g}", []).append({"seed": seed, **run})
                print(dataset, seed, f"{label}-entry-{ratio:g}", round(run["test"][BAR_METRIC], 4))
    summary = {label: summarize(r, KEYS) for label, r in runs.items()}
    return {
        "dataset": dataset,
        "users": ds.n_users,
        "items": ds.n_items,
        "runs": runs,
        "summary": summary,
    }


def markdown(results: list[dict], ratios: list[float]) -> str:
    lines = [
        "# DNIS: per-entry pruning (the paper's rule) against uniform widths",
        "",
        *(p for part in __doc__.split("\n\n")[1:5] for p in (part, "")),
    ]
    for res in results:
        s = res["summary"]
        full = s[f"bpr-{FULL}"][BAR_METRIC]["mean"]
        half = s[f"bpr-{HALF}"][BAR_METRIC]["mean"]
        lines += [
            "",
            f"## {res['dataset']} ({res['users']} users, {res['items']} items)",
            "",
            "| model | parameters | test Recall@20 | of full width | vs uniform 32 "
            "| valid Recall@20 | best epochs |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, runs in res["runs"].items():
            m = s[label][BAR_METRIC]
            params = int(np.mean([r.get("parameters", 0) for r in runs])) or None
            valid = np.mean([r["valid"][BAR_METRIC] for r in runs])
            epochs = ", ".join(str(r["best_epoch"]) for r in runs)
            lines.append(
                f"| {label} | {f'{params:,}' if params else ''} | {m['mean']:.4f} ± {m['std']:.4f} "
                f"| {m['mean'] / full:.1%} | {m['mean'] - half:+.4f} | {valid:.4f} | {epochs} |"
            )
        lines.append("")
        for ratio in ratios:
            for label in ("magnitude", "dnis"):
                m = s[f"{label}-entry-{ratio:g}"][BAR_METRIC]["mean"]
                lines.append(
                    f"- {label}-entry-{ratio:g}: {m / full:.1%} of full width "
                    f"(within {TOLERANCE:.0%}: **{m >= (1 - TOLERANCE) * full}**), "
                    f"{'better' if m > half else 'not better'} than uniform {HALF} ({half:.4f})"
                )
        widths = res["runs"][f"dnis-entry-{ratios[0]:g}"][0]["row_widths"]
        lines.append(
            f"- kept entries per row, dnis-entry-{ratios[0]:g}, first seed: "
            + "; ".join(
                f"{role} mean {w['mean']:.1f} (min {w['min']}, max {w['max']})"
                for role, w in widths.items()
            )
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic-2000x1000x40000"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5])
    parser.add_argument("--name", default="dnis_entry_pruning")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for dataset in args.datasets:
        results.append(run_dataset(dataset, args.seeds, args.ratios))
        write_result(
            args.name,
            {"seeds": args.seeds, "ratios": args.ratios, "results": results},
            markdown(results, args.ratios),
        )
    print(markdown(results, args.ratios))


if __name__ == "__main__":
    main()
