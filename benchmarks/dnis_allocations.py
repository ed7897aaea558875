"""Which per-block widths could beat uniform widths at half the parameters? DNIS's search space.

DNIS chooses a width per frequency block; the bar of issue 5 asks that its choice at half the
ID-embedding parameters beat the uniform width with the same count (32 of K = 64). This study
asks whether any point of that space does, by training fixed allocations directly (no search):
MDE's popularity rule (Ginart et al., the DNIS paper's baseline), which gives block s a share
of the parameters proportional to p_s^a (p_s its share of interactions), swept over a; a = 0
is uniform width 32 through the same mixed-width code, a > 0 gives frequent rows more width,
a < 0 gives rare rows more. Beside them: uniform BPR-MF at 32 and 64, and DNIS's searched
allocations (``free``: any (block, dimension) cell, one width per block; and the nested variant
whose blocks keep a prefix of one column ranking). The paper's finer per-entry pruning is
measured in ``benchmarks/dnis_entry_pruning.py``.

Protocol as benchmarks/dnis.py: random 8:1:1 split per user, BPR-MF (Adam lr 2e-3, batch
2048, one uniform negative), best epoch on validation Recall@20 (patience 10), 3 seeds
(split and initialisation), 10 equal frequency blocks per table.

    python -m benchmarks.dnis_allocations [--datasets ml-100k synthetic-2000x1000x40000] \
        [--exponents -0.3 0 0.3 0.6 1.0] [--seeds 2020 2021 2022]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import summarize, train_seeds, write_result
from benchmarks.dnis import (
    BAR_METRIC,
    FULL,
    KEYS,
    _dims,
    _kept_parameters,
    dnis_model,
    run_sections,
)

HALF = 0.5


def configurations(exponents: list[float]) -> dict[str, tuple[str, dict]]:
    """label -> (kind, model section)."""
    out: dict[str, tuple[str, dict]] = {
        f"bpr-{FULL}": ("uniform", {"name": "bpr", "embedding_size": FULL}),
        f"bpr-{FULL // 2}": ("uniform", {"name": "bpr", "embedding_size": FULL // 2}),
    }
    for a in exponents:
        out[f"mde a={a:g}"] = ("fixed", dnis_model(HALF, mde_exponent=a))
    out["dnis free"] = ("searched", dnis_model(HALF))
    out["dnis nested"] = ("searched", dnis_model(HALF, structure="nested"))
    return out


def run_dataset(dataset: str, seeds: list[int], exponents: list[float], threads: int) -> dict:
    from recsys.config import build_run_config
    from recsys.data.catalog import load_dataset

    data = load_dataset(build_run_config(None, [], data={"name": dataset}).data)
    common = run_sections(dataset, threads)
    out: dict = {"dataset": dataset, "users": data.n_users, "items": data.n_items, "models": {}}
    with tempfile.TemporaryDirectory(prefix="bench-dnis-alloc-") as tmp:
        for i, (label, (kind, model)) in enumerate(configurations(exponents).items()):
            folder = f"config-{i}"
            runs = train_seeds(folder, seeds, Path(tmp), model=model, **common)
            if kind == "uniform":
                for run in runs:
                    run["parameters"] = (data.n_users + data.n_items) * model["embedding_size"]
            else:
                kept = _kept_parameters(Path(tmp) / folder)
                for run in runs:
                    run["parameters"] = kept[run["seed"]]
                    run["dims"] = _dims(Path(tmp) / folder, run["seed"])
            out["models"][label] = {
                "kind": kind,
                "runs": runs,
                "summary": summarize(runs, KEYS),
                "valid": summarize(runs, KEYS, part="valid"),
                "parameters": float(np.mean([r["parameters"] for r in runs])),
            }
    return out


def markdown(results: list[dict], seeds: list[int]) -> str:
    doc = __doc__.split("\n\n")
    lines = ["# " + doc[0], "", doc[1], "", doc[2], ""]
    lines.append(f"Seeds {', '.join(map(str, seeds))}; mean ± std over seeds.")
    for res in results:
        models = res["models"]
        uniform = models[f"bpr-{FULL // 2}"]["summary"][BAR_METRIC]["mean"]
        full = models[f"bpr-{FULL}"]["summary"][BAR_METRIC]["mean"]
        lines += [
            "",
            f"## {res['dataset']} ({res['users']} users, {res['items']} items)",
            "",
            "| allocation | parameters | test Recall@20 | vs uniform 32 | of full width | "
            "valid Recall@20 | widths per block, first seed (user; item) |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, m in models.items():
            test = m["summary"][BAR_METRIC]
            dims = m["runs"][0].get("dims") or {}
            widths = "; ".join(" ".join(map(str, d)) for d in dims.values())
            lines.append(
                f"| {label} | {m['parameters']:,.0f} | {test['mean']:.4f} ± {test['std']:.4f} | "
                f"{test['mean'] - uniform:+.4f} | {100 * test['mean'] / full:.1f}% | "
                f"{m['valid'][BAR_METRIC]['mean']:.4f} | {widths} |"
            )
        half = {k: m for k, m in models.items() if m["kind"] != "uniform" or k.endswith("32")}
        best = max(half, key=lambda k: half[k]["valid"][BAR_METRIC]["mean"])
        lines += [
            "",
            f"Best half-parameter allocation on validation: **{best}** (test "
            f"{half[best]['summary'][BAR_METRIC]['mean']:.4f} against uniform 32 {uniform:.4f}).",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic-2000x1000x40000"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--exponents", nargs="+", type=float, default=[-0.3, 0, 0.3, 0.6, 1.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="dnis_allocations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for dataset in args.datasets:
        results.append(run_dataset(dataset, args.seeds, args.exponents, args.threads))
        write_result(
            args.name,
            {"seeds": args.seeds, "exponents": args.exponents, "results": results},
            markdown(results, args.seeds),
        )
    print(markdown(results, args.seeds))


if __name__ == "__main__":
    main()
