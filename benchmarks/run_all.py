"""The performance suite in one command: scaling, the evaluation floor and the Gowalla-sized run.

Runs ``benchmarks.scaling`` (1e5, 1e6, 1e7 interactions) and ``benchmarks.gowalla_lightgcn``
(LightGCN to a plateau on Gowalla-sized data, with the evaluator against its matmul + top-k
floor), each in its own process, then reads their result files and writes
``results/perf_suite.md`` / ``.json`` with the issue's bars checked, and two plots:
``results/perf_scaling.png`` (seconds per epoch and per evaluation against interactions, with
the linear reference) and ``results/perf_gowalla.png`` (validation Recall@20 against
minutes).

    python -m benchmarks.run_all [--skip-scaling] [--skip-gowalla] [--sizes 1e5 1e6 1e7]

Timings need a quiet machine: on 2 cores any other job changes them by 2x or more.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.common import RESULTS, write_result

PEAK_MEMORY_GB = 8.0
LINEAR_TOLERANCE = 1.3
EVAL_OVER_FLOOR = 1.5
GOWALLA_EPOCH_SECONDS = 20.0


def _run(module: str, *args: str) -> None:
    command = [sys.executable, "-m", f"benchmarks.{module}", *args]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def scaling_verdict(scaling: dict) -> dict:
    """The 1e7 BPR bars: peak memory and epoch time against 10x the 1e6 epoch."""
    rows = [r for r in scaling["rows"] if "error" not in r]
    by = {(r["setting"], r["n"]): r for r in rows}
    paired_ratios = {
        p["setting"]: p["median_ratio"]
        for p in scaling.get("paired", [])
        if (p["small"], p["large"]) == (10**6, 10**7)
    }
    out = {}
    for setting in sorted({r["setting"] for r in rows if r["setting"].startswith("bpr")}):
        big, mid = by.get((setting, 10**7)), by.get((setting, 10**6))
        if not (big and mid):
            continue
        separate = big["epoch_seconds"] / (10 * mid["epoch_seconds"])
        paired = paired_ratios.get(setting)
        # epochs alternating in one process give the ratio the bar is judged on, when present
        ratio = separate if paired is None else paired
        out[setting] = {
            "epoch_seconds_1e6": mid["epoch_seconds"],
            "epoch_seconds_1e7": big["epoch_seconds"],
            "epoch_over_linear_separate_runs": separate,
            "epoch_over_linear_paired": paired,
            "epoch_over_linear": ratio,
            "peak_rss_gb_1e7": big["peak_rss_gb"],
            "meets_linear": ratio <= LINEAR_TOLERANCE,
            "meets_memory": big["peak_rss_gb"] <= PEAK_MEMORY_GB,
        }
    return out


def plot_scaling(scaling: dict) -> None:
    rows = [r for r in scaling["rows"] if "error" not in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for setting in sorted({r["setting"] for r in rows}):
        mine = sorted((r for r in rows if r["setting"] == setting), key=lambda r: r["n"])
        n = [r["n"] for r in mine]
        axes[0].plot(n, [r["epoch_seconds"] for r in mine], "o-", label=setting)
        axes[1].plot(n, [r["eval_seconds"] for r in mine], "o-", label=f"{setting} evaluator")
        axes[1].plot(n, [r["floor_seconds"] for r in mine], "x--", label=f"{setting} floor")
        if mine:
            first = mine[0]
            axes[0].plot(
                n,
                [first["epoch_seconds"] * x / first["n"] for x in n],
                ":",
                color="grey",
                label=f"linear from {first['n']:.0e}" if setting == "bpr-sparse_adam" else None,
            )
    for ax, title in zip(
        axes, ("seconds per training epoch", "seconds per evaluation"), strict=True
    ):
        ax.set(xscale="log", yscale="log", xlabel="interactions", title=title)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "perf_scaling.png", dpi=120)
    plt.close(fig)


def plot_gowalla(gowalla: dict) -> None:
    minutes, recall, elapsed = [], [], 0.0
    for row in gowalla["epochs"]:
        elapsed += row["seconds"] / 60
        if "valid_recall_at_20" in row:
            minutes.append(elapsed)
            recall.append(row["valid_recall_at_20"])
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(minutes, recall, "o-")
    ax.set(
        xlabel="minutes (training + validation)",
        ylabel="validation Recall@20",
        title=f"LightGCN, batch {gowalla['batch_size']}",
    )
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "perf_gowalla.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-scaling", action="store_true", help="reuse results/scaling.json")
    parser.add_argument("--skip-gowalla", action="store_true", help="reuse its result file")
    parser.add_argument("--sizes", nargs="+", default=["1e5", "1e6", "1e7"])
    args = parser.parse_args()
    if not args.skip_scaling:
        _run("scaling", "--sizes", *args.sizes)
    if not args.skip_gowalla:
        # one thread, as the recorded plateau run (a long run on a shared machine)
        _run("gowalla_lightgcn", "--threads", "1")
    scaling, gowalla = _load("scaling"), _load("gowalla_lightgcn")
    # a separate short run on a quiet machine, when there is one, times the epoch and the
    # evaluator (the plateau run can be long, and its clock shared with other jobs)
    timing = _load("gowalla_lightgcn_timing")
    payload: dict = {"scaling": None, "gowalla": None}
    md = ["# Performance suite", ""]
    if scaling:
        verdict = scaling_verdict(scaling)
        payload["scaling"] = {"from": scaling["date"], "commit": scaling["git"], "bpr": verdict}
        plot_scaling(scaling)
        md += [
            f"Scaling (results/scaling.md, {scaling['date']}, commit {scaling['git']}):",
            "",
            "| setting | epoch 1e6 s | epoch 1e7 s | 1e7 / (10 x 1e6), separate runs | "
            "paired (median) | peak RSS 1e7 GB | "
            f"linear within {LINEAR_TOLERANCE}x | memory under {PEAK_MEMORY_GB:.0f} GB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for setting, v in verdict.items():
            paired = v["epoch_over_linear_paired"]
            md.append(
                f"| {setting} | {v['epoch_seconds_1e6']:.2f} | {v['epoch_seconds_1e7']:.2f} | "
                f"{v['epoch_over_linear_separate_runs']:.2f} | "
                f"{'' if paired is None else f'{paired:.2f}'} | {v['peak_rss_gb_1e7']:.2f} | "
                f"{v['meets_linear']} | {v['meets_memory']} |"
            )
        md += [
            "",
            "The linear bar is judged on the paired ratio where there is one (both sizes in one "
            "process, epochs alternating; see results/scaling.md).",
        ]
        md += ["", "![scaling](perf_scaling.png)", ""]
    if gowalla:
        clock = timing or gowalla
        g = {
            "from": gowalla["date"],
            "commit": gowalla["git"],
            "timing_from": clock["date"],
            "epoch_seconds": clock["epoch_seconds_median"],
            "meets_epoch": clock["epoch_seconds_median"] < GOWALLA_EPOCH_SECONDS,
            "evaluation_over_floor": clock["evaluation_over_floor"],
            "meets_floor": clock["evaluation_over_floor"] <= EVAL_OVER_FLOOR,
            "best_epoch": gowalla["best_epoch"],
            "minutes_to_plateau": gowalla["minutes_to_plateau"],
        }
        payload["gowalla"] = g
        plot_gowalla(gowalla)
        md += [
            f"Gowalla-sized LightGCN (results/gowalla_lightgcn.md, {g['from']}, "
            f"commit {g['commit']}; timing from the run of {g['timing_from']}): "
            f"{g['epoch_seconds']:.1f} s per epoch "
            f"(bar < {GOWALLA_EPOCH_SECONDS:.0f} s: {g['meets_epoch']}); evaluator / floor "
            f"{g['evaluation_over_floor']:.2f} (bar <= {EVAL_OVER_FLOOR}: {g['meets_floor']}); "
            f"best epoch {g['best_epoch']}, {g['minutes_to_plateau']:.1f} minutes to plateau.",
            "",
            "![gowalla](perf_gowalla.png)",
        ]
    path = write_result("perf_suite", payload, "\n".join(md))
    print(path.read_text())


if __name__ == "__main__":
    main()
