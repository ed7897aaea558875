"""ASHA versus a full sweep: the same 16-point BPR space on MovieLens-100k, through `recsys tune`.

Protocol: BPR-MF on MovieLens-100k (all ratings as positives, random 8:1:1 split per user,
split seed 2020, full ranking), Adam with batch 2048 and one negative, selection on
validation NDCG@10. The space is a 4 x 4 grid: embedding size {16, 32, 64, 128} x learning
rate {5e-4, 1e-3, 2e-3, 4e-3}. Every trial may run at most 50 epochs; the trainer's own
early stopping is off (patience 50), so "to the end" means 50 epochs and the scheduler is the
only difference between the runs:

- full sweep: `--scheduler none`, every configuration trains 50 epochs;
- ASHA: `--scheduler asha --grace-period 4 --reduction-factor 3` (rungs at 4, 12 and 36
  epochs), two trials at a time (one CPU each) on this 2-core machine. Asynchronous
  successive halving decides on the trials that reached a rung so far, so its result depends
  on the order trials start in: it runs once per random order of the 16 configurations
  (listed as the space's `points`, seeds 0, 1, ...).

Measured: total trial-epochs (the compute each spends), the best validation NDCG@10 each
finds, and that configuration's test NDCG@10 (tested once). Target: ASHA spends at most a
third of the full sweep's epochs and its best validation NDCG@10 is within 1% of the full
sweep's. A replay of Ray's ASHA rule on the full sweep's recorded learning curves, over many
random trial orders (two workers, equal epoch times), shows how often the target holds.

    python -m benchmarks.tune_asha_ml100k [--epochs 50] [--grace-period 4] [--repeats 4]

With ``--patience P`` the trainer's own early stopping is on in every trial (stop after P
evaluations without a gain in validation NDCG@10), so "to the end" means each configuration
trained until it stops improving, as ``recsys train`` does, up to ``--epochs``; the results go
to ``results/tune_asha_ml100k_patience<P>.*``:

    python -m benchmarks.tune_asha_ml100k --epochs 200 --patience 10

With ``--space reg`` the second axis is the L2 weight instead of the learning rate (the values
of ``tune/spaces/bpr.yaml``, {0, 1e-5, 1e-4, 1e-3}, at learning rate 1e-3): a space whose
configurations learn at the same speed; results go to ``results/tune_asha_ml100k_reg.*``:

    python -m benchmarks.tune_asha_ml100k --space reg

With ``--replay-sweep`` nothing trains: the recorded learning curves of those runs are replayed
under every ASHA setting of a grid (reduction factor x grace period x brackets), to show
whether any setting meets the target reliably, and beside it under synchronous successive
halving (`replay_sync_halving`: every surviving trial reaches a rung before any goes on, as
Ray's ``HyperBandScheduler`` runs a bracket), which does not depend on the trial order;
results go to ``results/tune_asha_ml100k_replay_sweep.*``:

    python -m benchmarks.tune_asha_ml100k --replay-sweep
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, write_result
from recsys.config import build_run_config
from recsys.tuning.driver import TuneOptions, TuneOutcome, run_tune
from recsys.tuning.space import parse_space

EMBEDDING_SIZES = [16, 32, 64, 128]


@dataclass(frozen=True)
class SecondAxis:
    """The hyper-parameter crossed with the embedding size to make the 16-point space."""

    key: str
    """Its run-config key."""
    field: str
    """Its name in the result rows."""
    label: str
    """Its column header."""
    values: tuple[float, ...]
    fixed: tuple[tuple[str, float], ...] = ()
    """Settings this space holds fixed (beyond the protocol's)."""


AXES = {
    # the learning rate changes how fast a trial learns, which is what early stopping reads
    "lr": SecondAxis("train.learning_rate", "learning_rate", "lr", (5e-4, 1e-3, 2e-3, 4e-3)),
    # the L2 weights of tune/spaces/bpr.yaml, at the trainer's default learning rate
    "reg": SecondAxis(
        "model.reg_weight",
        "reg_weight",
        "reg",
        (0.0, 1e-5, 1e-4, 1e-3),
        (("train.learning_rate", 1e-3),),
    ),
}
REDUCTION_FACTOR = 3
REPLAY_ORDERS = 500
METRIC = "ndcg_at_10"
EPOCH_SHARE = 1 / 3
"""ASHA may spend at most this share of the full sweep's trial-epochs."""
METRIC_TOLERANCE = 0.01
"""ASHA's best validation value must be at least (1 - this) times the full sweep's."""


def _space(axis: SecondAxis, order: int):
    """The 16 configurations as ``points``, in a random order drawn with seed ``order``.

    Asynchronous ASHA decides on the trials that reached a rung so far, so its result depends
    on the order trials start in; Ray runs a grid in a fixed nested order (sorted by quality
    along an axis is its worst case), so the configurations are listed as points instead.
    """
    grid = [(d, v) for d in EMBEDDING_SIZES for v in axis.values]
    rng = np.random.default_rng(order)
    points = [
        {"model.embedding_size": grid[i][0], axis.key: grid[i][1]}
        for i in rng.permutation(len(grid))
    ]
    return parse_space(
        {
            "fixed": dict(axis.fixed),
            "params": {
                "model.embedding_size": {"type": "choice", "values": EMBEDDING_SIZES},
                axis.key: {"type": "choice", "values": list(axis.values)},
            },
            "points": points,
        },
        source="benchmarks/tune_asha_ml100k.py",
    )


def _tune(
    axis: SecondAxis,
    scheduler: str,
    epochs: int,
    grace: int,
    output: Path,
    order: int,
    patience: int | None,
) -> TuneOutcome:
    cfg = build_run_config(
        None,
        ["train.progress=false"],
        model={"name": "bpr"},
        data={"name": "ml-100k"},
        split={"strategy": "ratio", "ratios": [0.8, 0.1, 0.1], "seed": 2020},
        train={
            "epochs": epochs,
            "patience": patience or epochs,
            "valid_metric": METRIC,
            "batch_size": 2048,
            "seed": 2020,
        },
        tracking={"enabled": False},
        output_dir=str(output),
    )
    options = TuneOptions(
        num_samples=len(EMBEDDING_SIZES) * len(axis.values),
        scheduler=scheduler,
        grace_period=grace,
        reduction_factor=REDUCTION_FACTOR,
        cpus_per_trial=1,
        max_concurrent=2,
        max_failures=0,
        verbose=0,
    )
    return run_tune(cfg, _space(axis, order), options, name=f"{scheduler}-{order}")


def _curves(outcome: TuneOutcome, axis: SecondAxis) -> dict[tuple[int, float], list[float]]:
    """Validation NDCG@10 per epoch of every trial, by (embedding size, second axis)."""
    curves = {}
    for result in (outcome.experiment_dir / "ray").glob("trial_*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        config = rows[0]["config"]
        key = (config["model.embedding_size"], config[axis.key])
        curves[key] = [row[f"valid/{METRIC}"] for row in sorted(rows, key=lambda r: r["epoch"])]
    return curves


def replay_asha(
    curves: dict,
    order: list,
    cap: int,
    grace: int,
    rf: float,
    workers: int = 2,
    brackets: int = 1,
    rng: np.random.Generator | None = None,
) -> tuple[int, float]:
    """Ray's asynchronous successive halving rule replayed on recorded learning curves.

    ``workers`` trials run at once, in ``order``, one epoch per time step each; at a rung a
    trial stops when its value is below the ``1 - 1/rf`` quantile of the values recorded at
    that rung so far (``ray.tune.schedulers.async_hyperband._Bracket``). With ``brackets``
    > 1, bracket ``s`` has its rungs from ``grace * rf**s`` on and each trial joins a bracket
    drawn with ``rng`` as Ray draws it (probability proportional to ``e**(number of rungs)``).
    Returns the total trial-epochs and the best validation value any trial reached.
    """
    rungs = []
    for s in range(brackets):
        n_rungs = int(np.log(cap / grace) / np.log(rf) - s + 1)
        rungs.append({grace * rf ** (k + s): [] for k in range(n_rungs)})
    sizes = np.array([len(r) for r in rungs])
    weights = np.exp(sizes - sizes.max())
    if brackets > 1:
        rng = rng if rng is not None else np.random.default_rng(0)
        drawn = rng.choice(brackets, size=len(order), p=weights / weights.sum())
        joined = dict(zip(order, drawn, strict=True))
    else:
        joined = dict.fromkeys(order, 0)
    queue, running, ran = list(order), {}, {}
    while queue or running:
        while len(running) < workers and queue:
            running[queue.pop(0)] = 0
        for key in list(running):
            running[key] += 1
            epoch = running[key]
            # a curve shorter than the cap ended in the trainer's own early stop
            stop = epoch >= min(cap, len(curves[key]))
            recorded = rungs[joined[key]]
            if epoch in recorded:
                value = curves[key][epoch - 1]
                seen = recorded[epoch]
                if seen and value < np.nanpercentile(seen, (1 - 1 / rf) * 100):
                    stop = True
                seen.append(value)
            if stop:
                ran[key] = running.pop(key)
    best = max(max(curves[key][:epochs]) for key, epochs in ran.items())
    return sum(ran.values()), best


def replay_sync_halving(curves: dict, cap: int, grace: int, rf: float) -> tuple[int, float]:
    """Synchronous successive halving replayed on recorded learning curves: every trial runs
    to the first rung (``grace`` epochs), the best ``ceil(n / rf)`` by their value there go on
    to the next (``grace * rf``), and so on; the survivors of the last rung below ``cap`` run
    to ``cap``. A curve shorter than a rung ended in the trainer's own early stop, so its trial
    stops there. No trial order enters: a bracket's decisions wait for all of its trials, as
    in Ray's ``HyperBandScheduler`` (which keeps ``ceil(n / eta)`` at each halving).
    Returns the total trial-epochs and the best validation value any trial reached.
    """
    ran = dict.fromkeys(curves, 0)
    alive = list(curves)
    rung = grace
    while alive:
        target = min(rung, cap)
        for key in alive:
            ran[key] = min(target, len(curves[key]))
        alive = [key for key in alive if ran[key] == target and target < cap]
        if not alive:
            break
        keep = int(np.ceil(len(alive) / rf))
        alive = sorted(alive, key=lambda k: curves[k][target - 1], reverse=True)[:keep]
        rung = int(rung * rf)
    best = max(max(curves[key][:epochs]) for key, epochs in ran.items() if epochs)
    return sum(ran.values()), best


def _full_sweep(curves: dict, cap: int) -> tuple[int, float]:
    """The full sweep's trial-epochs and best validation value, from its recorded curves."""
    return sum(len(c[:cap]) for c in curves.values()), max(max(c[:cap]) for c in curves.values())


def _replay(
    curves: dict, cap: int, grace: int, rf: float = REDUCTION_FACTOR, brackets: int = 1
) -> dict:
    rng = np.random.default_rng(0)
    keys = sorted(curves)
    full_epochs, full_best = _full_sweep(curves, cap)
    shares, ratios = [], []
    for _ in range(REPLAY_ORDERS):
        order = [keys[i] for i in rng.permutation(len(keys))]
        epochs, best = replay_asha(curves, order, cap, grace, rf, brackets=brackets, rng=rng)
        shares.append(epochs / full_epochs)
        ratios.append(best / full_best)
    shares_a, ratios_a = np.array(shares), np.array(ratios)
    return {
        "orders": REPLAY_ORDERS,
        "epoch_share_mean": float(shares_a.mean()),
        "epoch_share_quartiles": [float(q) for q in np.percentile(shares_a, [25, 50, 75])],
        "best_ratio_mean": float(ratios_a.mean()),
        "best_ratio_quartiles": [float(q) for q in np.percentile(ratios_a, [25, 50, 75])],
        "p_epochs_met": float((shares_a <= EPOCH_SHARE).mean()),
        "p_metric_met": float((ratios_a >= 1 - METRIC_TOLERANCE).mean()),
        "p_both_met": float(
            ((shares_a <= EPOCH_SHARE) & (ratios_a >= 1 - METRIC_TOLERANCE)).mean()
        ),
    }


def _summary(outcome: TuneOutcome, axis: SecondAxis) -> dict:
    best = outcome.best
    assert best is not None, "no trial finished"
    return {
        "trial_epochs": outcome.total_epochs,
        "best_params": best.params,
        f"best_valid_{METRIC}": best.best_value,
        "best_epoch": best.best_epoch,
        f"test_{METRIC}": outcome.test.get(METRIC),
        "seconds": round(outcome.seconds, 1),
        "stop_reasons": {
            reason: sum(t.stop_reason == reason for t in outcome.trials)
            for reason in sorted({t.stop_reason for t in outcome.trials})
        },
        "trials": [
            {
                "embedding_size": t.params["model.embedding_size"],
                axis.field: t.params[axis.key],
                "epochs": t.epochs,
                f"best_valid_{METRIC}": t.best_value,
                "stop_reason": t.stop_reason,
            }
            for t in outcome.trials
        ],
    }


def _key(trial: dict, axis: SecondAxis) -> tuple[int, float]:
    return trial["embedding_size"], trial[axis.field]


def run(
    epochs: int, grace: int, repeats: int, patience: int | None = None, space: str = "lr"
) -> dict:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    axis = AXES[space]
    out: dict = {
        "protocol": __doc__.split("\n\n")[1],
        "space": space,
        "epochs": epochs,
        "grace_period": grace,
        "patience": patience,
    }
    with tempfile.TemporaryDirectory(prefix="tune-asha-") as tmp:
        full_outcome = _tune(axis, "none", epochs, grace, Path(tmp), 0, patience)
        full = _summary(full_outcome, axis)
        curves = _curves(full_outcome, axis)
        ashas = [
            _summary(_tune(axis, "asha", epochs, grace, Path(tmp), i, patience), axis)
            for i in range(repeats)
        ]
    out["full"] = full
    out["asha"] = ashas
    full_value = full[f"best_valid_{METRIC}"]
    full_by_config = {_key(t, axis): t[f"best_valid_{METRIC}"] for t in full["trials"]}
    for asha in ashas:
        asha["epoch_share"] = asha["trial_epochs"] / full["trial_epochs"]
        asha["best_ratio"] = asha[f"best_valid_{METRIC}"] / full_value
        chosen = (asha["best_params"]["model.embedding_size"],
                  asha["best_params"][axis.key])  # fmt: skip
        # what ASHA's pick reaches when it is trained to the end (the full sweep's value)
        asha["chosen_config_full_valid"] = full_by_config[chosen]
        asha["target_met"] = bool(
            asha["epoch_share"] <= EPOCH_SHARE and asha["best_ratio"] >= 1 - METRIC_TOLERANCE
        )
    out["asha_mean"] = {
        "epoch_share": float(np.mean([a["epoch_share"] for a in ashas])),
        "best_ratio": float(np.mean([a["best_ratio"] for a in ashas])),
    }
    out["target_met"] = all(asha["target_met"] for asha in ashas)
    out["replay"] = _replay(curves, epochs, grace)
    out["curves"] = {f"{d}_{v:g}": c for (d, v), c in sorted(curves.items())}
    return out


SWEEP_REDUCTION_FACTORS = (2, 3, 4)
SWEEP_GRACE_PERIODS = (1, 2, 3, 4, 6, 8)
SWEEP_BRACKETS = (1, 2, 3)
SWEEP_SOURCES = ("tune_asha_ml100k", "tune_asha_ml100k_patience10", "tune_asha_ml100k_reg")


def replay_sweep(sources: tuple[str, ...] = SWEEP_SOURCES) -> dict:
    """Replay every ASHA setting of the sweep grid on each recorded run's learning curves."""
    out: dict = {"orders": REPLAY_ORDERS, "workers": 2, "runs": {}}
    for name in sources:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run the benchmark it records first")
        recorded = json.loads(path.read_text())
        cap = recorded["epochs"]
        curves = {}
        for key, curve in recorded["curves"].items():
            size, value = key.split("_")
            curves[(int(size), float(value))] = curve
        settings = []
        for rf in SWEEP_REDUCTION_FACTORS:
            for grace in SWEEP_GRACE_PERIODS:
                for brackets in SWEEP_BRACKETS:
                    if grace * rf ** (brackets - 1) > cap:
                        continue
                    replay = _replay(curves, cap, grace, rf, brackets)
                    settings.append(
                        {"reduction_factor": rf, "grace_period": grace, "brackets": brackets}
                        | replay
                    )
        full_epochs, full_best = _full_sweep(curves, cap)
        synchronous = []
        for rf in SWEEP_REDUCTION_FACTORS:
            for grace in SWEEP_GRACE_PERIODS:
                epochs, best = replay_sync_halving(curves, cap, grace, rf)
                share, ratio = epochs / full_epochs, best / full_best
                synchronous.append(
                    {
                        "reduction_factor": rf,
                        "grace_period": grace,
                        "epoch_share": share,
                        "best_ratio": ratio,
                        "both_met": share <= EPOCH_SHARE and ratio >= 1 - METRIC_TOLERANCE,
                    }
                )
        out["runs"][name] = {
            "synchronous": synchronous,
            "command": recorded["command"],
            "commit": recorded["git"],
            "epochs": cap,
            "patience": recorded.get("patience"),
            "grace_period": recorded["grace_period"],
            "settings": settings,
        }
    return out


def _sweep_markdown(result: dict) -> str:
    lines = [
        "# ASHA settings replayed on recorded learning curves: 16 BPR configurations on "
        "MovieLens-100k",
        "",
        "Nothing trains here. Each recorded full sweep of `benchmarks.tune_asha_ml100k` (every "
        "configuration's validation NDCG@10 per epoch) is replayed under Ray's ASHA rule "
        f"(`replay_asha`) for {result['orders']} random trial orders, {result['workers']} "
        "trials at a time, at every reduction factor x grace period x number of brackets of "
        "the grid (settings whose last bracket has no rung within the epochs are left out; "
        "with several brackets each trial joins one at random, as Ray assigns them). Target, "
        f"as in the benchmark: at most {EPOCH_SHARE:.2f} of the full sweep's trial-epochs and a "
        f"best validation NDCG@10 within {METRIC_TOLERANCE:.0%} of the full sweep's. Columns: "
        "mean epoch share, mean best ratio, and the share of orders meeting the epochs "
        "target, the metric target, and both; *as run* marks the setting of the recorded "
        "ASHA runs, whose row reproduces that run's own replay.",
    ]
    for name, run in result["runs"].items():
        settings = run["settings"]
        top = max(s["p_both_met"] for s in settings)
        lines += [
            "",
            f"## {name} (`{run['command']}`, commit {run['commit']}; at most {run['epochs']} "
            f"epochs per trial"
            + (f", trainer patience {run['patience']})" if run["patience"] else ")"),
            "",
            "| reduction factor | grace period | brackets | epoch share | best ratio | "
            "epochs met | metric met | both met |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in settings:
            both = f"{s['p_both_met']:.0%}"
            if s["p_both_met"] == top:
                both = f"**{both}**"
            ran = (s["reduction_factor"], s["grace_period"], s["brackets"]) == (
                REDUCTION_FACTOR,
                run["grace_period"],
                1,
            )
            lines.append(
                f"| {s['reduction_factor']}{' (as run)' if ran else ''} | {s['grace_period']} | "
                f"{s['brackets']} | "
                f"{s['epoch_share_mean']:.2f} | {s['best_ratio_mean']:.3f} | "
                f"{s['p_epochs_met']:.0%} | {s['p_metric_met']:.0%} | {both} |"
            )
        best = [s for s in settings if s["p_both_met"] == top]
        named = "; ".join(
            f"reduction factor {s['reduction_factor']}, grace {s['grace_period']}, "
            f"{s['brackets']} bracket{'s' if s['brackets'] > 1 else ''}"
            for s in best
        )
        lines += [
            "",
            f"Best setting: {named}, meeting both targets in {top:.0%} of trial orders.",
        ]
        if run.get("synchronous"):
            lines += [
                "",
                "Synchronous successive halving on the same curves (one bracket; order-free, "
                "so each setting meets the target or not):",
                "",
                "| reduction factor | grace period | epoch share | best ratio | both met |",
                "|---|---|---|---|---|",
            ]
            for s in run["synchronous"]:
                lines.append(
                    f"| {s['reduction_factor']} | {s['grace_period']} | {s['epoch_share']:.2f} "
                    f"| {s['best_ratio']:.3f} | {'yes' if s['both_met'] else 'no'} |"
                )
            met = sum(s["both_met"] for s in run["synchronous"])
            lines += ["", f"Met in {met} of {len(run['synchronous'])} settings."]
    return "\n".join(lines)


def _markdown(result: dict) -> str:
    full = result["full"]
    axis = AXES[result.get("space", "lr")]
    lines = [
        "# ASHA versus a full sweep: 16 BPR configurations on MovieLens-100k",
        "",
        result["protocol"],
        "",
        *(
            [
                f"**This run's space: embedding size {{{', '.join(map(str, EMBEDDING_SIZES))}}} "
                f"x {axis.key} {{{', '.join(f'{v:g}' for v in axis.values)}}}"
                + "".join(f", {k} fixed at {v:g}" for k, v in axis.fixed)
                + " (`--space reg`), in place of the learning-rate axis above.**",
                "",
            ]
            if axis.label != "lr"
            else []
        ),
        *(
            [
                f"**This run: the trainer's early stopping is on in every trial (patience "
                f"{result['patience']} evaluations), at most {result['epochs']} epochs, so the "
                "full sweep trains each configuration to its own plateau.**",
                "",
            ]
            if result.get("patience")
            else []
        ),
        "| run | trial-epochs | share of full | best valid NDCG@10 | ratio to full | "
        f"best config (d, {axis.label}) | its test NDCG@10 | time (s) | target met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def params(run: dict) -> str:
        p = run["best_params"]
        return f"{p['model.embedding_size']}, {p[axis.key]:g}"

    lines.append(
        f"| full sweep | {full['trial_epochs']} | 1.00 | {full[f'best_valid_{METRIC}']:.4f} | "
        f"1.000 | {params(full)} | {full[f'test_{METRIC}']:.4f} | {full['seconds']:.0f} | |"
    )
    for i, asha in enumerate(result["asha"]):
        lines.append(
            f"| ASHA (order seed {i}) | {asha['trial_epochs']} | {asha['epoch_share']:.2f} | "
            f"{asha[f'best_valid_{METRIC}']:.4f} | {asha['best_ratio']:.3f} | {params(asha)} | "
            f"{asha[f'test_{METRIC}']:.4f} | {asha['seconds']:.0f} | {asha['target_met']} |"
        )
    mean = result["asha_mean"]
    met = sum(a["target_met"] for a in result["asha"])
    replay = result["replay"]
    lines += [
        f"| ASHA, mean of {len(result['asha'])} | | {mean['epoch_share']:.2f} | | "
        f"{mean['best_ratio']:.3f} | | | | |",
        "",
        f"Target: ASHA spends at most {EPOCH_SHARE:.2f} of the full sweep's trial-epochs and "
        f"finds a best validation NDCG@10 within {METRIC_TOLERANCE:.0%} of it: met in "
        f"**{met} of {len(result['asha'])}** ASHA runs.",
        "",
        f"Replay of Ray's ASHA rule on the full sweep's learning curves, {replay['orders']} "
        "random trial orders, two workers: epoch share mean "
        f"{replay['epoch_share_mean']:.2f} (quartiles "
        f"{', '.join(f'{q:.2f}' for q in replay['epoch_share_quartiles'])}), best ratio mean "
        f"{replay['best_ratio_mean']:.3f} (quartiles "
        f"{', '.join(f'{q:.3f}' for q in replay['best_ratio_quartiles'])}); epochs target met "
        f"in {replay['p_epochs_met']:.0%} of orders, metric target in "
        f"{replay['p_metric_met']:.0%}, both in {replay['p_both_met']:.0%}.",
        "",
        "Per configuration (validation NDCG@10 at the best epoch; epochs ASHA gave it, first "
        "ASHA run):",
        "",
        f"| d | {axis.label} | full sweep | ASHA epochs | ASHA stop |",
        "|---|---|---|---|---|",
    ]
    asha_by = {_key(t, axis): t for t in result["asha"][0]["trials"]}
    for trial in sorted(full["trials"], key=lambda t: _key(t, axis)):
        a = asha_by[_key(trial, axis)]
        lines.append(
            f"| {trial['embedding_size']} | {trial[axis.field]:g} | "
            f"{trial[f'best_valid_{METRIC}']:.4f} | {a['epochs']} | {a['stop_reason']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--grace-period", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=4, help="ASHA runs (trial orders)")
    parser.add_argument(
        "--patience", type=int, help="trainer early stopping in every trial (default: off)"
    )
    parser.add_argument(
        "--space",
        choices=sorted(AXES),
        default="lr",
        help="the axis crossed with the embedding size: learning rate or L2 weight",
    )
    parser.add_argument(
        "--replay-sweep",
        action="store_true",
        help="train nothing: replay a grid of ASHA settings on the recorded learning curves",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.replay_sweep:
        sweep = replay_sweep()
        path = write_result("tune_asha_ml100k_replay_sweep", sweep, _sweep_markdown(sweep))
        print(path.read_text())
        return
    tic = time.perf_counter()
    result = run(args.epochs, args.grace_period, args.repeats, args.patience, args.space)
    result["total_seconds"] = round(time.perf_counter() - tic, 1)
    name = "tune_asha_ml100k" + (f"_{args.space}" if args.space != "lr" else "")
    name += f"_patience{args.patience}" if args.patience else ""
    path = write_result(name, result, _markdown(result))
    print(path.read_text())


if __name__ == "__main__":
    main()
