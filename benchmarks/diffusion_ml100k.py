"""DiffRec and its one-step students beside LightGCN, Mult-VAE and EASE on MovieLens-100k.

Protocol: all 100,000 ratings as positives; random-order 8:1:1 split per user (as in
accuracy_ml100k); full ranking with training items masked (and for test, validation items);
every model selects its best epoch (EASE: its ridge penalty from a small grid) on validation
Recall@20, DiffRec's own selection metric; the test metrics of that choice are reported, mean
of 3 seeds (2020, 2021, 2022), each seed setting both the split and the initialisation.

DiffRec (the teacher): T = 5 steps, linear-variance schedule s = 0.01, alpha in [1e-3, 1e-2]
(the reference's clean Yelp setting), MLP I+10 -> 1000 -> I, input dropout 0.5, SNR
reweighting, importance-sampled steps; AdamW lr 1e-4, batch 128, validation every 5 epochs,
patience 6 validations, up to 400 epochs. Inference starts from the history (no noise), T calls.
Students (one network call, the teacher's architecture, initialised from its weights), trained
per seed against that seed's teacher: ``free`` (no training: the teacher's call at t = T,
reported first), ``regression``, ``boot`` and ``consistency``; AdamW lr 1e-4, batch 128,
validation every 3 epochs, patience 6, up to 60 epochs. Baselines: LightGCN (64 dims, 2 layers,
reg 1e-4, batch 2048, lr 1e-3); Mult-VAE (I-600-200-600-I as in the vae_ml100k benchmark:
dropout 0.5, lr 1e-3, batch 100, beta cap 0.2 over 5000 steps, patience 30); EASE with lambda in
{50, 100, 200, 500, 1000} chosen per seed on validation.

Inference cost: users per second of scoring every user (history rows -> item scores, batches of
256 users, best of 9 passes with the models taking turns, torch on ``--threads`` threads), by
this process's CPU time and by wall clock, for the teacher at T calls and at 1 call, and for
each student; top-k selection is not included. Histories enter the first network call as a
sparse matrix (teacher and students alike); the teacher's later calls take dense states.
Jaccard@20: overlap of each model's top-20 (training items masked) with the teacher's.

Bars for a distilled one-step student (notes c.4): test Recall@20 and NDCG@20 both within 2%
(relative) of the teacher's, Recall@20 above the free one-call baseline, and at least T times
the teacher's users per CPU-second.

    python -m benchmarks.diffusion_ml100k [--seeds 2020 2021 2022] [--threads 1]
        [--baselines lightgcn multvae ease] [--methods free regression boot consistency]
        [--workdir DIR]   # keep run folders; a rerun reuses finished runs of the same settings
    python -m benchmarks.diffusion_ml100k --render [JSON]
        # no training: recompute the verdict and rewrite results/diffusion_ml100k.{json,md}
        # from a recorded result (default results/diffusion_ml100k.json), keeping its command,
        # date, commit and machine
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    RESULTS,
    git_sha,
    per_seed_rows,
    result_header,
    summarize,
    train_seeds,
    write_result,
)
from recsys.jsonio import dumps_json

KEYS = ("recall_at_10", "ndcg_at_10", "recall_at_20", "ndcg_at_20")
SPLIT = {"strategy": "ratio", "ratios": [0.8, 0.1, 0.1]}
EVAL = {"topk": [10, 20], "metrics": ["recall", "ndcg", "precision"]}
SELECT = "recall_at_20"
TEACHER = (
    {
        "name": "diffrec",
        "steps": 5,
        "noise_scale": 0.01,
        "noise_min": 0.001,
        "noise_max": 0.01,
        "hidden_dims": [1000],
    },
    {
        "optimizer": "adamw",
        "learning_rate": 1e-4,
        "batch_size": 128,
        "epochs": 400,
        "eval_every": 5,
        "patience": 6,
    },
)
STUDENT_TRAIN = {
    "optimizer": "adamw",
    "learning_rate": 1e-4,
    "batch_size": 128,
    "epochs": 60,
    "eval_every": 3,
    "patience": 6,
}
VAE_TRAIN = {"batch_size": 100, "learning_rate": 1e-3, "epochs": 300, "patience": 30}
BASELINES: dict[str, tuple[dict, dict]] = {
    "lightgcn": (
        {"name": "lightgcn", "embedding_size": 64, "n_layers": 2, "reg_weight": 1e-4},
        {"batch_size": 2048, "learning_rate": 1e-3, "epochs": 500, "patience": 10},
    ),
    "multvae": (
        {"name": "multvae", "anneal_cap": 0.2, "total_anneal_steps": 5000},
        VAE_TRAIN,
    ),
    "ease": ({"name": "ease"}, {}),
}
EASE_GRID = (50.0, 100.0, 200.0, 500.0, 1000.0)


def _common(threads: int) -> dict:
    return {
        "data": {"name": "ml-100k"},
        "split": SPLIT,
        "evaluation": EVAL,
        "overrides": [f"train.num_threads={threads}"],
    }


def _finished(out: Path, seed: int, model: dict, train: dict) -> tuple[dict, Path] | None:
    """A finished run in ``out`` with this seed and these settings (``--workdir`` reuse)."""
    import json

    import yaml

    from recsys.jsonio import nan_for_none

    for metrics_path in sorted(out.glob("*/metrics.json")):
        cfg = yaml.safe_load((metrics_path.parent / "config.yaml").read_text())
        same_model = all(cfg["model"].get(k) == v for k, v in model.items())
        same_train = all(cfg["train"].get(k) == v for k, v in train.items())
        if cfg["split"]["seed"] == seed and same_model and same_train:
            metrics = json.loads(metrics_path.read_text())
            history = json.loads((metrics_path.parent / "history.json").read_text())
            run = {
                "seed": seed,
                "best_epoch": metrics["best_epoch"],
                "epochs_run": metrics["epochs_run"],
                # epochs' own time (the reused run's wall time was not recorded)
                "seconds": float(sum(r.get("seconds", 0.0) for r in history)),
                # metrics.json writes NaN as null (strict JSON): NaN again, as from train_run
                "valid": nan_for_none(metrics["valid"]),
                "test": nan_for_none(metrics["test"]),
            }
            print(f"{out.name} seed {seed}: reusing {metrics_path.parent}", flush=True)
            return run, metrics_path.parent
    return None


def _train(label: str, seed: int, workdir: Path, model: dict, train: dict, threads: int):
    """One seed of one configuration; returns (run summary, run folder).

    A finished run of the same settings and seed already in ``workdir`` is reused, so an
    interrupted benchmark continues where it stopped.
    """
    out = workdir / label
    train = {**train, "valid_metric": SELECT}
    found = _finished(out, seed, model, train)
    if found is not None:
        return found
    before = set(out.glob("*/config.yaml"))
    run = train_seeds(label, [seed], workdir, model=model, train=train, **_common(threads))[0]
    (config,) = set(out.glob("*/config.yaml")) - before
    return run, config.parent


def users_per_second(
    score_fns: dict[str, object], n_users: int, batch: int = 256, rounds: int = 9
) -> dict[str, dict[str, float]]:
    """Users scored per second over all users, for each score function, by wall clock and by
    this process's CPU time: the best of ``rounds`` passes, the functions taking turns within
    each round so that they see the same machine load.

    With one torch thread the CPU time is the compute itself; on a shared machine the wall
    clock also counts time the process waited for a core."""
    users = torch.arange(n_users)
    wall = dict.fromkeys(score_fns, float("inf"))
    cpu = dict.fromkeys(score_fns, float("inf"))
    with torch.no_grad():
        for fn in score_fns.values():
            fn(users[:batch])  # warm-up
        for _ in range(rounds):
            for name, fn in score_fns.items():
                tic, cpu_tic = time.perf_counter(), time.process_time()
                for start in range(0, n_users, batch):
                    fn(users[start : start + batch])
                wall[name] = min(wall[name], time.perf_counter() - tic)
                cpu[name] = min(cpu[name], time.process_time() - cpu_tic)
    return {name: {"wall": n_users / wall[name], "cpu": n_users / cpu[name]} for name in score_fns}


def _top20(score_fn, split) -> np.ndarray:
    from recsys.eval.evaluator import Evaluator

    items, _ = Evaluator().topk(score_fn, np.arange(split.shape[0]), 20, exclude=[split.train])
    return items


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over users of |A ∩ B| / |A ∪ B| of two top-k lists."""
    inter = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
    return float(np.mean(inter / (a.shape[1] + b.shape[1] - inter)))


def cost_and_overlap(teacher_dir: Path, student_dirs: dict[str, Path]) -> dict[str, dict]:
    """Users/s and Jaccard@20 with the teacher, for the teacher (T and 1 call) and students."""
    from recsys.experiment import load_run

    _, _, split, teacher = load_run(teacher_dir, device="cpu")
    n = split.shape[0]
    fns = {
        f"teacher_T{teacher.config.steps}": teacher.scorer(),
        "teacher_1call": teacher.scorer(n_calls=1),
    }
    for method, path in student_dirs.items():
        fns[method] = load_run(path, device="cpu")[3].scorer()
    reference = _top20(fns[f"teacher_T{teacher.config.steps}"], split)
    speed = users_per_second(fns, n)
    return {
        name: {
            "users_per_second": speed[name]["wall"],
            "users_per_cpu_second": speed[name]["cpu"],
            "jaccard20_with_teacher": _jaccard(_top20(fn, split), reference),
        }
        for name, fn in fns.items()
    }


def run(
    seeds: list[int], baselines: list[str], methods: list[str], threads: int, workdir: Path
) -> dict:
    out: dict = {"protocol": __doc__.split("\n\n")[1], "models": {}, "cost": {}}
    models: dict[str, dict] = {}

    def add(label: str, run_summary: dict, params: dict) -> None:
        models.setdefault(label, {"params": params, "runs": []})["runs"].append(run_summary)

    for seed in seeds:
        teacher_run, teacher_dir = _train("diffrec", seed, workdir, *TEACHER, threads)
        add("diffrec", teacher_run, {"model": TEACHER[0], "train": TEACHER[1]})
        student_dirs = {}
        for method in methods:
            model = {"name": "diffrec_student", "teacher": str(teacher_dir), "method": method}
            run_summary, student_dirs[method] = _train(
                f"student-{method}", seed, workdir, model, STUDENT_TRAIN, threads
            )
            add(
                f"student-{method}",
                run_summary,
                {
                    "model": {**model, "teacher": "<this seed's diffrec run>"},
                    "train": STUDENT_TRAIN,
                },
            )
        cost = cost_and_overlap(teacher_dir, student_dirs)
        out["cost"][str(seed)] = cost
        print(f"seed {seed} cost: {cost}", flush=True)
        _write_partial(out, models, f"seeds done: {seeds[: seeds.index(seed) + 1]}")
    for name in baselines:
        model, train = BASELINES[name]
        for seed in seeds:
            if name == "ease":
                grid = [
                    _train(f"ease-l{lam:g}", seed, workdir, {**model, "l2": lam}, train, threads)[0]
                    | {"l2": lam}
                    for lam in EASE_GRID
                ]
                best = max(grid, key=lambda r: r["valid"][SELECT])
                add("ease", best, {"model": model, "l2_grid": list(EASE_GRID)})
            else:
                add(name, _train(name, seed, workdir, model, train, threads)[0], {"model": model})
        _write_partial(out, models, f"baseline done: {name}")
    for entry in models.values():
        entry["summary"] = summarize(entry["runs"], KEYS)
    out["models"] = models
    out["verdict"] = verdict(out, methods)
    return out


def _write_partial(out: dict, models: dict, note: str) -> None:
    """The JSON so far (``results/diffusion_ml100k_partial.json``), in case the run is cut."""
    partial = {**out, "models": models, "note": note}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "diffusion_ml100k_partial.json"
    path.write_text(dumps_json(partial, indent=2, default=float) + "\n")


def _mean_cost(result: dict, name: str, key: str) -> float:
    return float(np.mean([c[name][key] for c in result["cost"].values() if name in c]))


def verdict(result: dict, methods: list[str]) -> dict:
    """c.4's bars for each distilled one-step student: test Recall@20 *and* NDCG@20 within 2%
    (relative) of the teacher's, Recall@20 above the free one-call baseline, and at least T
    times the teacher's users per CPU-second."""
    models = result["models"]
    steps = TEACHER[0]["steps"]
    teacher = models["diffrec"]["summary"]
    teacher_r20 = teacher["recall_at_20"]["mean"]
    teacher_n20 = teacher["ndcg_at_20"]["mean"]
    teacher_cpu = _mean_cost(result, f"teacher_T{steps}", "users_per_cpu_second")
    teacher_wall = _mean_cost(result, f"teacher_T{steps}", "users_per_second")
    free_r20 = (
        models["student-free"]["summary"]["recall_at_20"]["mean"] if "free" in methods else None
    )
    out = {}
    for method in methods:
        if method == "free":
            continue
        summary = models[f"student-{method}"]["summary"]
        r20 = summary["recall_at_20"]["mean"]
        n20 = summary["ndcg_at_20"]["mean"]
        recall_ok = r20 >= 0.98 * teacher_r20
        ndcg_ok = n20 >= 0.98 * teacher_n20
        speedup = _mean_cost(result, method, "users_per_cpu_second") / teacher_cpu
        out[method] = {
            "recall_at_20": r20,
            "relative_to_teacher": r20 / teacher_r20,
            "ndcg_at_20": n20,
            "ndcg_relative_to_teacher": n20 / teacher_n20,
            "recall_within_2pct_of_teacher": recall_ok,
            "ndcg_within_2pct_of_teacher": ndcg_ok,
            "within_2pct_of_teacher": recall_ok and ndcg_ok,
            "beats_free": free_r20 is not None and r20 > free_r20,
            "speedup_vs_teacher": speedup,
            "speedup_vs_teacher_wall_clock": _mean_cost(result, method, "users_per_second")
            / teacher_wall,
            "at_least_T_times_faster": speedup >= steps,
        }
    return out


def markdown(result: dict) -> str:
    models = result["models"]
    steps = TEACHER[0]["steps"]
    teacher_r20 = models["diffrec"]["summary"]["recall_at_20"]["mean"]
    teacher_n20 = models["diffrec"]["summary"]["ndcg_at_20"]["mean"]
    cost_name = {"diffrec": f"teacher_T{steps}", "student-free": "free"}
    lines = [
        "# DiffRec, its one-step students and baselines on MovieLens-100k (mean of seeds)",
        "",
        *([result["rerendered"]["note"], ""] if "rerendered" in result else []),
        result["protocol"],
        "",
        "| model | calls | " + " | ".join(KEYS) + " | R@20 / teacher | N@20 / teacher | "
        "users/CPU-s | speed-up | users/s (wall) | speed-up (wall) | Jaccard@20 vs teacher | "
        "best epochs | s/run |",
        "|---" * (len(KEYS) + 11) + "|",
    ]
    order = ["student-free", "diffrec"] + [
        k for k in models if k.startswith("student-") and k != "student-free"
    ]
    order += [k for k in models if k not in order]
    teacher_cpu = _mean_cost(result, f"teacher_T{steps}", "users_per_cpu_second")
    teacher_wall = _mean_cost(result, f"teacher_T{steps}", "users_per_second")
    for label in order:
        entry = models[label]
        s = entry["summary"]
        cells = [f"{s[k]['mean']:.4f} ± {s[k]['std']:.4f}" for k in KEYS]
        name = cost_name.get(label, label.removeprefix("student-"))
        if any(name in c for c in result["cost"].values()):
            cpu = _mean_cost(result, name, "users_per_cpu_second")
            wall = _mean_cost(result, name, "users_per_second")
            jac = _mean_cost(result, name, "jaccard20_with_teacher")
            cost = (
                f"{cpu:.0f} | {cpu / teacher_cpu:.2f}x | {wall:.0f} | {wall / teacher_wall:.2f}x | "
                f"{jac:.3f}"
            )
        else:
            cost = " | | | | "
        calls = steps if label == "diffrec" else 1 if label.startswith("student-") else ""
        rel = (
            f"{s['recall_at_20']['mean'] / teacher_r20:.3f} | "
            f"{s['ndcg_at_20']['mean'] / teacher_n20:.3f}"
        )
        epochs = ", ".join(str(x["best_epoch"]) for x in entry["runs"])
        secs = np.mean([x["seconds"] for x in entry["runs"]])
        shown = "free (teacher, 1 call)" if label == "student-free" else label
        lines.append(
            f"| {shown} | {calls} | " + " | ".join(cells) + f" | {rel} | {cost} | {epochs} | "
            f"{secs:.0f} |"
        )
    lines += [
        "",
        "Bars (distilled one-step student, notes c.4): test Recall@20 and NDCG@20 both within 2% "
        "(relative) of the teacher's, Recall@20 above the free one-call baseline, and at least "
        f"T = {steps} times the teacher's users/s.",
        "",
        "| student | R@20 | R@20 / teacher | N@20 | N@20 / teacher | R@20 and N@20 within 2% | "
        "beats free | speed-up (CPU time) | >= T x | speed-up (wall) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, v in result["verdict"].items():
        lines.append(
            f"| {method} | {v['recall_at_20']:.4f} | {v['relative_to_teacher']:.3f} | "
            f"{v['ndcg_at_20']:.4f} | {v['ndcg_relative_to_teacher']:.3f} | "
            f"{v['within_2pct_of_teacher']} | {v['beats_free']} | {v['speedup_vs_teacher']:.2f}x | "
            f"{v['at_least_T_times_faster']} | {v['speedup_vs_teacher_wall_clock']:.2f}x |"
        )
    lines += [
        "",
        "Speed is judged on CPU time (one torch thread): the machine's 2 cores may be shared "
        "with other jobs, and then the wall clock also counts waiting for a core. s/run of a run "
        "reused from --workdir is the sum of its recorded epoch times (train + validation). "
        "Teacher one-call cost "
        "(the free baseline through the teacher's scorer): "
        f"{_mean_cost(result, 'teacher_1call', 'users_per_cpu_second'):.0f} users/CPU-s.",
    ]
    lines += [
        "",
        "Per seed (test):",
        "",
        *per_seed_rows(
            {label: models[label] for label in order},
            {"R@20": "recall_at_20", "N@20": "ndcg_at_20"},
        ),
    ]
    return "\n".join(lines)


def _tree_state(path: Path) -> str:
    """`` (with uncommitted changes to benchmarks/<file>)`` when ``path`` differs from the
    checkout's commit, else ``""`` (read-only git; ``""`` where git is unavailable)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", str(path)],
            capture_output=True,
            text=True,
            cwd=path.parent,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f" (with uncommitted changes to benchmarks/{path.name})" if out.strip() else ""


def render(source: Path, name: str = "diffusion_ml100k", results: Path = RESULTS) -> Path:
    """Recompute the verdict of a recorded result and rewrite ``<results>/<name>.{json,md}``
    without training.

    The header keeps the recorded run's command, date, commit and machine (the numbers are
    that run's); the markdown says that the verdict was re-rendered, when and at which
    commit, and the JSON records the same under ``rerendered``. Returns the markdown path.
    """
    result = json.loads(Path(source).read_text())
    models = result["models"]
    methods = [k.removeprefix("student-") for k in models if k.startswith("student-")]
    result["verdict"] = verdict(result, methods)
    here = Path(__file__).resolve()
    commit = git_sha() + _tree_state(here)
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result["rerendered"] = {
        "command": f"python -m benchmarks.{here.stem} --render",
        "date": date,
        "git": commit,
        "note": (
            f"Verdict re-rendered without training on {date} at commit {commit}, from the "
            "recorded JSON of the run above (its numbers, command, date, commit and machine "
            "are unchanged): the bars now require NDCG@20 as well as Recall@20 within 2% of "
            "the teacher's."
        ),
    }
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(dumps_json(result, indent=2, default=float) + "\n")
    # the header of the recorded run (its command, date, commit and machine)
    path = results / f"{name}.md"
    path.write_text(result_header(result) + markdown(result).rstrip() + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=list(BASELINES))
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["free", "regression", "boot", "consistency"],
        choices=["free", "regression", "boot", "consistency"],
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="keep the run folders here (default: temp)")
    parser.add_argument(
        "--smoke", action="store_true", help="one epoch per model: checks the script, not results"
    )
    parser.add_argument(
        "--render",
        nargs="?",
        type=Path,
        const=RESULTS / "diffusion_ml100k.json",
        metavar="JSON",
        help="no training: recompute the verdict of a recorded result (default "
        "results/diffusion_ml100k.json) and rewrite results/diffusion_ml100k.{json,md}",
    )
    args = parser.parse_args()
    if args.render:
        print(render(args.render).read_text())
        return
    torch.set_num_threads(args.threads)
    if args.smoke:
        for train in (TEACHER[1], STUDENT_TRAIN, *(t for _, t in BASELINES.values())):
            train["epochs"] = 1
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        result = run(args.seeds, args.baselines, args.methods, args.threads, workdir)
    name = "diffusion_ml100k_smoke" if args.smoke else "diffusion_ml100k"
    path = write_result(name, result, markdown(result))
    print(path.read_text())


if __name__ == "__main__":
    main()
