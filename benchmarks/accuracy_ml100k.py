"""BPR and LightGCN on MovieLens-100k under RecBole 1.2.1's default protocol, 3 split seeds.

Protocol (RecBole's defaults, as in the core issue): all 100,000 ratings as positives, no
filtering; random-order 8:1:1 split per user; full ranking; training items masked (and for
test, validation items); Adam lr 1e-3, batch 2048, one uniform negative; early stopping on
validation NDCG@10 with patience 10; embedding size 64; LightGCN with 2 layers and reg 1e-4.
The seed (2020, 2021, 2022) sets both the split and the initialisation.

RecBole 1.2.1's own numbers on this machine kind (mean of the same seeds) are the reference.

    python -m benchmarks.accuracy_ml100k [--models bpr lightgcn] [--seeds 2020 2021 2022]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import per_seed_rows, summarize, train_seeds, write_result

RECBOLE = {
    "bpr": {"recall_at_10": 0.2451, "ndcg_at_10": 0.2883, "epochs": "75-88"},
    "lightgcn": {"recall_at_10": 0.2487, "ndcg_at_10": 0.2939, "epochs": "136-204"},
}
MODEL_PARAMS = {
    "bpr": {"embedding_size": 64},
    "lightgcn": {"embedding_size": 64, "n_layers": 2, "reg_weight": 1e-4},
}
TOLERANCE = 0.005
KEYS = (
    "recall_at_10",
    "ndcg_at_10",
    "recall_at_20",
    "ndcg_at_20",
    "mrr_at_10",
    "hit_at_10",
    "precision_at_10",
)


def run(models: list[str], seeds: list[int]) -> dict:
    out: dict = {"protocol": __doc__.split("\n\n")[1], "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            runs = train_seeds(
                model,
                seeds,
                Path(tmp),
                model={"name": model, **MODEL_PARAMS.get(model, {})},
                data={"name": "ml-100k"},
                split={"strategy": "ratio", "ratios": [0.8, 0.1, 0.1]},
                train={"valid_metric": "ndcg_at_10", "patience": 10, "epochs": 500},
            )
            summary = summarize(runs, KEYS)
            ref = RECBOLE.get(model)
            verdict = None
            if ref:
                verdict = {
                    key: {
                        "ours": summary[key]["mean"],
                        "recbole": ref[key],
                        "bar": ref[key] - TOLERANCE,
                        "meets_bar": summary[key]["mean"] >= ref[key] - TOLERANCE,
                        "beats_recbole": summary[key]["mean"] >= ref[key],
                    }
                    for key in ("recall_at_10", "ndcg_at_10")
                }
            out["models"][model] = {
                "params": MODEL_PARAMS.get(model, {}),
                "runs": runs,
                "summary": summary,
                "recbole_1_2_1": ref,
                "verdict": verdict,
            }
    return out


def markdown(result: dict) -> str:
    lines = [
        "# MovieLens-100k accuracy, RecBole default protocol, mean of split seeds",
        "",
        result["protocol"],
        "",
        "| model | Recall@10 (mean ± std) | NDCG@10 (mean ± std) | RecBole 1.2.1 R@10 / N@10 | "
        "bar (RecBole − 0.005) met | epochs (best) | s/run |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, r in result["models"].items():
        s = r["summary"]
        ref = r["recbole_1_2_1"] or {}
        met = all(v["meets_bar"] for v in r["verdict"].values()) if r["verdict"] else "n/a"
        epochs = ", ".join(str(x["best_epoch"]) for x in r["runs"])
        secs = np.mean([x["seconds"] for x in r["runs"]])
        lines.append(
            f"| {model} | {s['recall_at_10']['mean']:.4f} ± {s['recall_at_10']['std']:.4f} | "
            f"{s['ndcg_at_10']['mean']:.4f} ± {s['ndcg_at_10']['std']:.4f} | "
            f"{ref.get('recall_at_10', '')} / {ref.get('ndcg_at_10', '')} | {met} | {epochs} | "
            f"{secs:.0f} |"
        )
    lines += [
        "",
        "Per seed:",
        "",
        *per_seed_rows(
            result["models"],
            {
                "R@10": "recall_at_10",
                "N@10": "ndcg_at_10",
                "R@20": "recall_at_20",
                "N@20": "ndcg_at_20",
            },
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["bpr", "lightgcn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    args = parser.parse_args()
    result = run(args.models, args.seeds)
    path = write_result("accuracy_ml100k", result, markdown(result))
    print(path.read_text())


if __name__ == "__main__":
    main()
