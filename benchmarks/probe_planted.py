"""RecSAE probe bars on planted concepts (full case), plus MovieLens-100k probes.

Planted data: `recsys.data.synthetic.make_synthetic` with 8 factors; items more than
one standard deviation out on factor k carry the `genre` token `f{k}+` / `f{k}-` (16
planted concepts). Two generators: `concepts` (`user_concepts=2`: each user's taste follows
2 of the 8 factors, with random signs) and `dense` (the default: every user has a dense
Gaussian factor vector). For each seed a LightGCN (64 dimensions, 2 layers) is trained with
early stopping on validation NDCG@10, then probed with the default settings (TopK SAE, k=16,
expansion 4, on the `user` representation).

Bars (from the probe issue): at least 90% of the planted concepts named by a latent with
confidence >= 0.8; ablating concept latents lowers the concept's share of top-10 at least 5x
more than ablating random latents; the SAE reconstruction keeps validation NDCG@10 within 5%.

`--ml100k` also trains LightGCN and BPR-MF on MovieLens-100k (RecBole protocol, as
`accuracy_ml100k`) and probes both from the command line, recording their reports' numbers.

    python -m benchmarks.probe_planted [--seeds 0 1 2] [--users 3000] [--ml100k]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import write_result
from recsys.data.split import split_ratio
from recsys.data.synthetic import make_synthetic
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model
from recsys.probe.concepts import named_concepts
from recsys.probe.pipeline import ProbeConfig, run_probe
from recsys.train.trainer import TrainConfig, Trainer

PLANTED = [f"genre=f{k}{sign}" for k in range(8) for sign in "+-"]
GENERATORS = {"concepts": 2, "dense": None}


def planted_case(generator: str, seed: int, n_users: int) -> dict:
    """Train LightGCN on one planted dataset, probe it, and measure the bars."""
    n_items = n_users // 5
    tic = time.perf_counter()
    ds = make_synthetic(
        n_users,
        n_items,
        n_users * 30,
        temperature=0.25,
        seed=seed,
        user_concepts=GENERATORS[generator],
        modalities={},
    )
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=seed)
    model = create_model("lightgcn", embedding_size=64, n_layers=2)
    train_cfg = TrainConfig(
        epochs=100, learning_rate=0.005, batch_size=2048, patience=5, progress=False, seed=seed
    )
    fit = Trainer(
        model, split, train_cfg, Evaluator(topk=(10,), metrics=("ndcg",)), dataset=ds
    ).fit()
    train_s = time.perf_counter() - tic
    config = ProbeConfig.model_validate({"train": {"progress": False}}).with_seed(seed)
    result = run_probe(model, ds, split, config)
    row: dict = {
        "generator": generator,
        "seed": seed,
        "users": n_users,
        "items": n_items,
        "interactions": n_users * 30,
        "lightgcn_best_epoch": fit.best_epoch,
        "lightgcn_valid_ndcg_at_10": fit.best_valid["ndcg_at_10"],
        "train_seconds": train_s,
        "probe_seconds": result.seconds,
        "valid_ndcg_base": result.quality["valid_base"]["ndcg_at_10"],
        "valid_ndcg_sae": result.quality["valid_sae"]["ndcg_at_10"],
        "valid_retention": result.quality["valid_retention"],
        "test_retention": result.quality["test_retention"],
        "fvu": result.quality["fvu"],
        "dead_fraction": result.quality["dead_fraction"],
        "ablation": result.ablation,
        "itda_atoms": result.itda.get("n_atoms"),
        "methods": {},
    }
    groups = {"sae": result.concepts, **result.baseline_concepts}
    for name, concepts in groups.items():
        found = named_concepts(concepts, PLANTED)
        s = result.summaries[name]
        row["methods"][name] = {
            "named": sum(v is not None for v in found.values()),
            "missed": [c for c, v in found.items() if v is None],
            "n_interpretable": s["n_interpretable"],
            "n_distinct_concepts": s["n_distinct_concepts"],
            "n_alive": s["n_alive"],
            "fvu_interpretable_only": s["fvu_interpretable_only"],
            "coherence": s["coherence"],
        }
    row["coherence_chance"] = result.quality["coherence_chance"]
    a = result.ablation
    named = row["methods"]["sae"]["named"]
    row["bars"] = {
        "named_share": named / len(PLANTED),
        "named_ge_90pct": named >= 0.9 * len(PLANTED),
        "ablation_ratio": a.get("drop_ratio_vs_random_latent"),
        "ablation_ge_5x": a.get("n_ablated", 0) > 0
        and a["mean_drop"] >= 5 * max(a["mean_random_latent_drop"], 0.0)
        and a["mean_drop"] > 0,
        "ndcg_within_5pct": result.quality["valid_retention"] >= 0.95,
    }
    print(
        f"{generator} seed {seed}: named {named}/16, ablation drop {a['mean_drop']:.4f} vs "
        f"random {a['mean_random_latent_drop']:.4f}, retention "
        f"{result.quality['valid_retention']:.4f} (train {train_s:.0f} s, probe "
        f"{result.seconds:.0f} s)",
        flush=True,
    )
    return row


def ml100k_case(folder: Path) -> dict:
    """Train LightGCN and BPR on MovieLens-100k and probe both through the CLI."""
    from recsys.cli import main

    out: dict = {}
    for model in ("lightgcn", "bpr"):
        tic = time.perf_counter()
        code = main(
            [
                "train",
                "--model",
                model,
                "--dataset",
                "ml-100k",
                "-o",
                str(folder),
                "--quiet",
                "--no-tracking",
                "--set",
                f"run_name={model}",
                "--set",
                "train.epochs=500",
            ]
        )
        assert code == 0
        train_s = time.perf_counter() - tic
        tic = time.perf_counter()
        report_dir = folder / model / "probe"
        compare = ["--compare", str(folder / "lightgcn")] if model == "bpr" else []
        code = main(
            [
                "probe",
                str(folder / model),
                "--quiet",
                "--no-tracking",
                "-o",
                str(report_dir),
                "--json",
                *compare,
            ]
        )
        assert code == 0
        report = json.loads((report_dir / "report.json").read_text())
        q = report["quality"]
        out[model] = {
            "train_seconds": train_s,
            "probe_seconds": time.perf_counter() - tic,
            "valid_ndcg_base": q["valid_base"]["ndcg_at_10"],
            "valid_ndcg_sae": q["valid_sae"]["ndcg_at_10"],
            "valid_retention": q["valid_retention"],
            "test_retention": q["test_retention"],
            "fvu": q["fvu"],
            "dead_fraction": q["dead_fraction"],
            "coherence_chance": q["coherence_chance"],
            "summary": report["summary"],
            "ablation": report["ablation"]["summary"],
            "itda": {k: v for k, v in report["itda"].items() if k != "seconds"},
            "top_concepts": [
                {"latent": c["latent"], "label": c["label"], "confidence": c["confidence"]}
                for c in report["cards"][:8]
            ],
        }
        print(f"ml-100k {model}: retention {q['valid_retention']:.4f}", flush=True)
    return out


def _mean(rows: list[dict], get) -> float:
    return float(np.mean([get(r) for r in rows]))


def _coherence(methods: dict, chance: float | None) -> str:
    """RecSAE's coherence of the three methods and the chance level (blank in results recorded
    before it was measured)."""
    values = [methods[k].get("coherence") for k in ("sae", "untrained", "neurons")]
    if chance is None or any(v is None for v in values):
        return ""
    return " · ".join(f"{v:.2f}" for v in values) + f"; {chance:.2f}"


def markdown(result: dict) -> str:
    lines = [
        "# RecSAE probe on planted concepts (LightGCN)",
        "",
        __doc__.split("\n\n")[1],
        "",
        "| generator | seed | named (of 16) | ablation drop: concept / random latent (ratio) | "
        "NDCG@10 retention (valid / test) | FVU | interpretable / distinct (SAE · untrained · "
        "neurons) | FVU from interpretable latents (SAE · untrained · neurons) | coherence (SAE · "
        "untrained · neurons; chance) | train / probe s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["planted"]:
        m, a = r["methods"], r["ablation"]
        ratio = a["drop_ratio_vs_random_latent"]
        ratio_s = "∞" if ratio is None or ratio == float("inf") else f"{ratio:.0f}x"
        lines.append(
            f"| {r['generator']} | {r['seed']} | {m['sae']['named']} "
            f"(untrained {m['untrained']['named']}, neurons {m['neurons']['named']}) | "
            f"{a['mean_drop']:.3f} / {a['mean_random_latent_drop']:.4f} ({ratio_s}) | "
            f"{r['valid_retention']:.3f} / {r['test_retention']:.3f} | {r['fvu']:.3f} | "
            + " · ".join(
                f"{m[k]['n_interpretable']}/{m[k]['n_distinct_concepts']}"
                for k in ("sae", "untrained", "neurons")
            )
            + " | "
            + " · ".join(
                f"{m[k]['fvu_interpretable_only']:.2f}" for k in ("sae", "untrained", "neurons")
            )
            + f" | {_coherence(m, r.get('coherence_chance'))}"
            + f" | {r['train_seconds']:.0f} / {r['probe_seconds']:.0f} |"
        )
    lines += ["", "Bars met per generator (all seeds):", ""]
    for gen in GENERATORS:
        rows = [r for r in result["planted"] if r["generator"] == gen]
        if not rows:
            continue
        bars = {
            k: all(r["bars"][k] for r in rows)
            for k in ("named_ge_90pct", "ablation_ge_5x", "ndcg_within_5pct")
        }
        lines.append(
            f"- `{gen}`: named >= 90%: {bars['named_ge_90pct']} (mean share "
            f"{_mean(rows, lambda r: r['bars']['named_share']):.3f}); ablation >= 5x random: "
            f"{bars['ablation_ge_5x']}; NDCG@10 within 5%: {bars['ndcg_within_5pct']} (mean "
            f"retention {_mean(rows, lambda r: r['valid_retention']):.4f})"
        )
    if result.get("ml100k"):
        lines += [
            "",
            "# MovieLens-100k (RecBole protocol, default probe settings, from the CLI)",
            "",
            "| model | valid NDCG@10 base / with SAE (retention) | test retention | FVU | dead | "
            "interpretable / distinct (SAE · untrained · neurons) | coherence (SAE · untrained · "
            "neurons; chance) | ablation drop: concept / random | ITDA atoms; Jaccard (chance) | "
            "most confident concepts |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for model, r in result["ml100k"].items():
            s, a = r["summary"], r["ablation"]
            drop = (
                f"{a['mean_drop']:.3f} / {a['mean_random_latent_drop']:.4f}"
                if a.get("n_ablated")
                else "none ablated"
            )
            top = "; ".join(f"{c['label']} ({c['confidence']:.2f})" for c in r["top_concepts"][:4])
            lines.append(
                f"| {model} | {r['valid_ndcg_base']:.4f} / {r['valid_ndcg_sae']:.4f} "
                f"({r['valid_retention']:.3f}) | {r['test_retention']:.3f} | {r['fvu']:.3f} | "
                f"{r['dead_fraction']:.3f} | "
                + " · ".join(
                    f"{s[k]['n_interpretable']}/{s[k]['n_distinct_concepts']}"
                    for k in ("sae", "untrained", "neurons")
                )
                + f" | {_coherence(s, r.get('coherence_chance'))}"
                + f" | {drop} | {r['itda']['n_atoms']}; "
                + ", ".join(
                    f"{x['other']} {x['jaccard']:.2f} ({x['chance']:.2f})"
                    for x in r["itda"]["similarity"]
                )
                + f" | {top} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--generators", nargs="+", default=list(GENERATORS))
    parser.add_argument("--ml100k", action="store_true", help="also probe MovieLens-100k")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result: dict = {"planted_concepts": PLANTED, "planted": []}
    for generator in args.generators:
        for seed in args.seeds:
            result["planted"].append(planted_case(generator, seed, args.users))
    if args.ml100k:
        with tempfile.TemporaryDirectory(prefix="probe-ml100k-") as tmp:
            result["ml100k"] = ml100k_case(Path(tmp))
    path = write_result("probe_planted", result, markdown(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
