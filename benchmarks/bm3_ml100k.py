"""BM3 (text + genre modalities) and LightGCN side by side on MovieLens-100k, same protocol.

Protocol: all 100,000 ratings as positives; random 8:1:1 split per user (RecBole's RO); full
ranking with training (and, for test, validation) items masked; Adam lr 1e-3, batch 2048; early
stopping on validation Recall@20 with patience 20 (BM3's protocol), at most 1000 epochs; test
metrics at the best validation epoch. The seed sets both the split and the initialisation.

BM3 uses the paper's defaults (embedding 64, 1 layer, dropout 0.5, reg 0.1, cl_weight 2) and
MovieLens' two modalities: ``text`` (title, release year and genres joined and encoded by
all-MiniLM-L6-v2, 384-d; needs ``recsys[text]``) and ``genre`` (19-d multi-hot). LightGCN uses
its defaults (embedding 64, 2 layers, reg 1e-4, one uniform negative). BM3 without modalities
(its ID-only form) is the third row. Ablations, run on request (``--models``): BM3 with the
genre modality only (``bm3_genre``), the text modality only (``bm3_text``), and both with the
raw features frozen instead of fine-tuned (``bm3_frozen_features``).

    python -m benchmarks.bm3_ml100k [--seeds 2020] [--models lightgcn bm3 bm3_no_modalities]
        [--name bm3_ml100k]

Each run is the same as, e.g.::

    recsys train --model bm3 --dataset ml-100k --set train.valid_metric=recall_at_20 \\
        --set train.patience=20 --set train.epochs=1000 --set split.seed=2020
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import summarize, train_seeds, write_result
from recsys.data.features import text_encoder_available

MODELS = {
    "lightgcn": {"name": "lightgcn", "n_layers": 2, "reg_weight": 1e-4},
    "bm3": {"name": "bm3", "modalities": ["text", "genre"]},
    "bm3_no_modalities": {"name": "bm3", "modalities": []},
    "bm3_genre": {"name": "bm3", "modalities": ["genre"]},
    "bm3_text": {"name": "bm3", "modalities": ["text"]},
    "bm3_frozen_features": {
        "name": "bm3",
        "modalities": ["text", "genre"],
        "train_features": False,
    },
}
DEFAULT_MODELS = ["lightgcn", "bm3", "bm3_no_modalities"]
KEYS = ("recall_at_10", "ndcg_at_10", "recall_at_20", "ndcg_at_20")


def model_sections(models: list[str], text: bool) -> dict[str, dict]:
    """The model section of each run, by label. Without the text encoder (``text`` False) a
    run's ``text`` modality is left out, and a run with no other modality is skipped; the log
    says which."""
    sections = {}
    for model in models:
        section = dict(MODELS[model])
        modalities = section.get("modalities", [])
        if not text and "text" in modalities:
            rest = [m for m in modalities if m != "text"]
            if not rest:
                print(f"recsys[text] is not installed: {model} is skipped", flush=True)
                continue
            section["modalities"] = rest
            print(f"recsys[text] is not installed: {model} runs with {rest} only", flush=True)
        sections[model] = section
    return sections


def run(models: list[str], seeds: list[int], threads: int) -> dict:
    out: dict = {"protocol": __doc__.split("\n\n")[1:3], "models": {}}
    sections = model_sections(models, text_encoder_available())
    with tempfile.TemporaryDirectory(prefix="bm3-ml100k-") as tmp:
        for model, section in sections.items():
            runs = train_seeds(
                model,
                seeds,
                Path(tmp),
                model=section,
                data={"name": "ml-100k"},
                split={"strategy": "ratio", "ratios": [0.8, 0.1, 0.1]},
                train={
                    "valid_metric": "recall_at_20",
                    "patience": 20,
                    "epochs": 1000,
                    "num_threads": threads,
                },
                evaluation={"topk": [10, 20]},
            )
            summary = summarize(runs, KEYS)
            out["models"][model] = {"params": section, "runs": runs, "summary": summary}
    return out


def markdown(result: dict) -> str:
    lines = [
        "# MovieLens-100k: BM3 (text + genre) and LightGCN, same protocol",
        "",
        *result["protocol"],
        "",
        "| model | R@10 | N@10 | R@20 | N@20 | best epochs | s/run |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, r in result["models"].items():
        s = r["summary"]
        epochs = ", ".join(str(x["best_epoch"]) for x in r["runs"])
        secs = np.mean([x["seconds"] for x in r["runs"]])
        cells = " | ".join(
            f"{s[k]['mean']:.4f}" + (f" ± {s[k]['std']:.4f}" if len(r["runs"]) > 1 else "")
            for k in KEYS
        )
        lines.append(f"| {model} ({r['params']}) | {cells} | {epochs} | {secs:.0f} |")
    models = result["models"]
    if "bm3" in models and "lightgcn" in models:
        diff = (
            models["bm3"]["summary"]["recall_at_20"]["mean"]
            - models["lightgcn"]["summary"]["recall_at_20"]["mean"]
        )
        winner = "BM3" if diff > 0 else "LightGCN"
        lines += ["", f"Recall@20, BM3 − LightGCN: {diff:+.4f} ({winner} wins)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=DEFAULT_MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="bm3_ml100k", help="result file name")
    args = parser.parse_args()
    result = run(args.models, args.seeds, args.threads)
    path = write_result(args.name, result, markdown(result))
    print(path.read_text())


if __name__ == "__main__":
    main()
