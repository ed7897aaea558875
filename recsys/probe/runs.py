"""Probing a run folder: load the trained model, probe it, write and log the report.

``recsys probe RUN_OR_CHECKPOINT`` accepts a run folder written by ``recsys train`` or a
checkpoint file inside one (``<run>/checkpoints/best.pt``, or ``last.pt`` to probe the last
epoch instead of the best). The report lands in ``<run>/probes/<site>-<time>/`` (``-2``,
``-3``, ... when that is taken) unless an output folder is given, which must be new or empty:
a probe never overwrites an earlier report. The files appear together, once all are written::

    report.html   the self-contained page
    report.json   the same numbers
    sae.pt        the trained SAE (``TopKSAE.from_export(torch.load(...))``)

MLflow: the probe is recorded as a *child run* of the training run (tag
``mlflow.parentRunId``, run name ``probe-<site>``) in the training run's store, with the probe
configuration as params, the headline numbers and the per-epoch SAE curves as metrics, and
``report.html``, ``report.json`` and ``sae.pt`` as artifacts (under ``probe/``). When the
training run is not in the store (it was trained with ``--no-tracking``, or another URI is
given) the probe gets a run of its own in the same experiment, tagged with the run folder. An
``experiment`` other than the training run's (``--experiment``) is honoured: the probe is a run
of its own there, tagged with the run folder and ``training_run_id`` (MLflow shows children
only in their parent's experiment). Every user error (options, site, ``sae.k``, held-out share,
the ``--compare`` run) is raised before the MLflow run is opened. The URI is
``--tracking-uri``, else the training run's, else ``$RECSYS_TRACKING_URI``, else
``sqlite:///<folder holding the run>/mlflow.db`` (where ``recsys train`` put it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from recsys.config import RunConfig
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.data.synthetic import parse_synthetic_name
from recsys.errors import ConfigError, DataError, TrackingError
from recsys.experiment import (
    build_model,
    check_run_finished,
    data_fingerprint,
    load_run,
    read_run_record,
)
from recsys.models.base import Recommender
from recsys.probe.collect import ProbeSiteError, collect_representations, site_kind
from recsys.probe.labeller import load_labeller
from recsys.probe.pipeline import ProbeConfig, ProbeResult, check_probe, run_probe
from recsys.probe.report import write_report
from recsys.probe.sae import torch_threads
from recsys.tracking import (
    ENV_TRACKING_URI,
    MlflowTracker,
    NullTracker,
    Tracker,
    check_tracking_uri,
    flatten_params,
    redact_uri,
    resolve_tracking_uri,
)
from recsys.train.checkpoint import atomic_write_bytes, load_checkpoint, load_weights

log = logging.getLogger(__name__)


@dataclass
class LoadedRun:
    """A trained model with its data, from a run folder."""

    run_dir: Path
    checkpoint: Path
    config: RunConfig
    dataset: Dataset
    split: Split
    model: Recommender


def resolve_run(path: Path) -> tuple[Path, Path]:
    """``(run folder, checkpoint)`` of a run folder or a checkpoint inside one.

    Raises:
        DataError: the path is missing, not a ``.pt`` file or folder, or the run folder lacks
            ``config.yaml``, ``split.npz`` or the checkpoint (the message names the file).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; give a run folder or its checkpoints/best.pt")
    if path.is_file():
        if path.suffix != ".pt":
            raise DataError(f"{path} is neither a run folder nor a checkpoint file (.pt)")
        checkpoint = path
        # a bare "best.pt" (run from inside checkpoints/) has the parent "." with no name
        parent = path.parent if path.parent.name else path.absolute().parent
        run_dir = parent.parent if parent.name == "checkpoints" else parent
    else:
        run_dir = path
        checkpoint = path / "checkpoints" / "best.pt"
    for name in ("config.yaml", "split.npz"):
        if not (run_dir / name).is_file():
            raise DataError(f"{run_dir} is not a complete run folder: {name} is missing")
    if not checkpoint.is_file():
        raise DataError(
            f"{run_dir}: checkpoint {checkpoint.relative_to(run_dir)} is missing "
            "(the run never finished a validated epoch)"
        )
    return run_dir, checkpoint


def load_trained(path: Path) -> LoadedRun:
    """Load the run's config, data, split and the model with the checkpoint's weights.

    The model is loaded on the CPU, where the probe runs, whatever device it trained on. A
    run that failed before it was tested is refused (as ``recsys evaluate`` refuses it); an
    interrupted one is probed at its checkpoint, with a warning.

    Raises:
        DataError: the run folder or checkpoint is incomplete, or the run failed.
    """
    run_dir, checkpoint = resolve_run(path)
    check_run_finished(run_dir)
    # the representations the probe edits are on the CPU, so the scorer must be too (a model
    # left on the GPU it trained on fails to score from them, or cannot load without one)
    cfg, dataset, split, model = load_run(run_dir, "cpu")
    if checkpoint.resolve() != (run_dir / "checkpoints" / "best.pt").resolve():
        # a fresh model: loading best.pt can change its structure (DNIS switches to the
        # compact per-block tables), which the search state of last.pt no longer fits
        model = build_model(cfg, split, dataset)
        load_weights(model, load_checkpoint(checkpoint), checkpoint)
        model.eval()
    return LoadedRun(run_dir, checkpoint, cfg, dataset, split, model)


def _fold_in_history(run: LoadedRun) -> sp.csr_array | None:
    """The user rows a fold-in model of ``run`` scores from: its split's training rows, plus
    the fold-in rows of held-out users when it has them; None for other models."""
    return run.split.history if run.model.fold_in else None


def make_probe_tracker(
    loaded: LoadedRun, enabled: bool, uri: str | None, experiment: str | None
) -> tuple[Tracker, dict[str, str]]:
    """The tracker of a probe and the extra tags of its run.

    A child of the training run when the store has it and ``experiment`` is None or the
    training run's; with another ``experiment``, a run of its own there, tagged
    ``training_run_id`` (a child is only shown in its parent's experiment); a run of its own
    in ``experiment`` (default: the run config's) when the store lacks the training run.
    """
    if not enabled:
        return NullTracker(), {}
    record = read_run_record(loaded.run_dir)
    parent, trained_at = record.get("tracking_run_id"), record.get("tracking_uri")
    chosen = uri or loaded.config.tracking.uri
    if not chosen and not os.environ.get(ENV_TRACKING_URI, "").strip():
        # nothing names a store: the one the training run went to (with $RECSYS_TRACKING_URI,
        # say), unless its password was hidden when it was recorded
        chosen = trained_at if trained_at and "***" not in trained_at else None
    resolved = resolve_tracking_uri(chosen, loaded.run_dir.parent)
    check_tracking_uri(resolved)
    name = experiment or loaded.config.tracking.experiment
    if parent:
        try:
            child = MlflowTracker(resolved, experiment=name, parent_run_id=parent)
        except TrackingError as exc:
            log.info("training run %s not found at %s (%s)", parent, redact_uri(resolved), exc)
        else:
            if not experiment:
                return child, {}
            own = MlflowTracker(resolved, experiment=experiment)
            if own.experiment_id == child.experiment_id:
                return child, {}
            log.info(
                "--experiment %r is not the training run's experiment: the probe is a run of its "
                "own there, tagged training_run_id=%s",
                experiment,
                parent,
            )
            return own, {"training_run_id": parent}
    return MlflowTracker(resolved, experiment=name), {}


def headline_metrics(result: ProbeResult) -> dict[str, float]:
    """The numbers logged as MLflow metrics."""
    q, s = result.quality, result.summaries
    out: dict[str, float] = {
        "probe/fvu": q["fvu"],
        "probe/dead_fraction": q["dead_fraction"],
        "probe/best_epoch": q["best_epoch"],
        "probe/n_interpretable": s["sae"]["n_interpretable"],
        "probe/n_alive": s["sae"]["n_alive"],
    }
    out["probe/coherence"] = s["sae"].get("coherence")
    for name in ("untrained", "neurons"):
        if name in s:
            out[f"probe/{name}/n_interpretable"] = s[name]["n_interpretable"]
            out[f"probe/{name}/coherence"] = s[name].get("coherence")
    if "valid_retention" in q:
        metric = q["valid_metric"]
        out[f"probe/valid/{metric}_base"] = q["valid_base"][metric]
        out[f"probe/valid/{metric}_sae"] = q["valid_sae"][metric]
        out["probe/valid_retention"] = q["valid_retention"]
        out["probe/test_retention"] = q["test_retention"]
    a = result.ablation
    if a.get("n_ablated"):
        out["probe/ablation/mean_drop"] = a["mean_drop"]
        out["probe/ablation/mean_random_latent_drop"] = a["mean_random_latent_drop"]
        out["probe/ablation/mean_steer_gain"] = a["mean_steer_gain"]
    if result.itda.get("enabled"):
        out["probe/itda/n_atoms"] = result.itda["n_atoms"]
        out["probe/itda/fvu"] = result.itda["fvu"]
    return {k: float(v) for k, v in out.items() if v is not None and v == v}


def probe_run(
    path: Path,
    config: ProbeConfig | None = None,
    *,
    output_dir: Path | None = None,
    compare: Path | None = None,
    tracking: bool = True,
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> tuple[ProbeResult, Path]:
    """Probe the run (or checkpoint) at ``path``; write the report; log it to MLflow.

    Returns:
        ``(result, report folder)``.
    """
    config = config or ProbeConfig()
    # everything the user can get wrong fails here, before the model is loaded or trained
    if compare is not None and not config.itda.enabled:
        raise ConfigError(
            "--compare measures ITDA similarity, which itda.enabled=false (--no-itda) turns off"
        )
    if output_dir is not None:
        check_output_dir(Path(output_dir))
    labeller = load_labeller(config.labeller)
    loaded = load_trained(path)
    # and what needs the model (site, sae.k, held-out share, the compared run) before the
    # MLflow run opens, so a mistake leaves no failed run behind
    with torch_threads(config.train.num_threads):
        plan = check_probe(loaded.model, loaded.split, config)
    other, other_history = None, None
    if compare is not None:
        second = load_trained(compare)
        check_comparable(loaded, second, config.site, plan.reps)
        other = second.model
        other_history = _fold_in_history(second)
    tracker, extra_tags = make_probe_tracker(loaded, tracking, tracking_uri, experiment)
    tracker.start(
        f"probe-{config.site}",
        flatten_params(config.model_dump(mode="json"), prefix="probe."),
        tags={
            "kind": "probe",
            "model": loaded.config.model["name"],
            "dataset": loaded.dataset.name,
            "run_dir": str(loaded.run_dir.resolve()),
            "checkpoint": str(loaded.checkpoint.resolve()),
            **extra_tags,
        },
    )
    folder: Path | None = None
    try:
        result = run_probe(
            loaded.model,
            loaded.dataset,
            loaded.split,
            config,
            compare=other,
            labeller=labeller,
            model_name=loaded.config.model["name"],
            mask_valid_at_test=loaded.config.eval.mask_valid_at_test,
            compare_history=other_history,
            plan=plan,
        )
        result.setup["run_dir"] = str(loaded.run_dir)
        result.setup["checkpoint"] = str(loaded.checkpoint)
        result.setup["tracking_run_id"] = getattr(tracker, "run_id", None)
        if output_dir is not None:
            folder = write_outputs(result, Path(output_dir))
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            folder = write_outputs(
                result, loaded.run_dir / "probes" / f"{config.site}-{stamp}", fresh=True
            )
        html_path, json_path = folder / "report.html", folder / "report.json"
        for row in result.history:
            tracker.log_metrics(
                {f"probe/epoch/{k}": v for k, v in row.items() if k != "epoch" and v == v},
                step=int(row["epoch"]),
            )
        tracker.log_metrics(headline_metrics(result))
        tracker.log_artifact(html_path, "probe")
        tracker.log_artifact(json_path, "probe")
        tracker.log_artifact(folder / "sae.pt", "probe")
        tracker.end("FINISHED")
    except KeyboardInterrupt:
        tracker.end("KILLED")
        _say_kept(folder)
        raise
    except BaseException:
        tracker.end("FAILED")
        _say_kept(folder)
        raise
    return result, folder


def _say_kept(folder: Path | None) -> None:
    # the report is complete when logging to MLflow fails; a rerun is not needed to get it
    if folder is not None:
        log.warning("the probe report was written to %s before the failure", folder)


def check_output_dir(folder: Path) -> None:
    """Refuse an output folder that holds anything: the probe never overwrites a report.

    Raises:
        DataError: ``folder`` is a file, or a folder that is not empty.
    """
    if folder.is_file():
        raise DataError(f"output folder {folder} is a file")
    if folder.is_dir() and any(folder.iterdir()):
        raise DataError(
            f"output folder {folder} already exists and is not empty; give a new or empty "
            "folder (a probe does not overwrite an earlier report)"
        )


# the keys of a run config's data section that decide which interactions a run learns from
# (format and sep only decide how the same files parse; cache_dir only where they are kept)
_DATA_KEYS = (
    "name",
    "path",
    "columns",
    "rating_threshold",
    "min_user_interactions",
    "min_item_interactions",
    "dedup",
)
_SYNTHETIC_KEYS = ("seed", "label_noise")  # used by synthetic-UxIxN names only


def _shown(value: object) -> str:
    return str(value) if isinstance(value, Path) else repr(value)


def data_differences(mine: LoadedRun, theirs: LoadedRun) -> list[str]:
    """How the data ``theirs`` was trained on differs from ``mine``'s: the data-section keys
    of the two run configs that decide the interactions, and the dataset name and user and
    item id lists (``run.json``'s ``data_ids``, which loading a run checks against its data).
    The split is not compared: a different split of the same data is the same data.

    Returns:
        One ``key=theirs vs mine`` entry per difference; empty for the same data.
    """
    a, b = mine.config.data, theirs.config.data
    keys = list(_DATA_KEYS)
    synthetic = a.path is None and a.name is not None and parse_synthetic_name(a.name)
    if synthetic:
        keys += _SYNTHETIC_KEYS
    out = [
        f"data.{key}={_shown(getattr(b, key))} vs {_shown(getattr(a, key))}"
        for key in keys
        if getattr(a, key) != getattr(b, key)
    ]
    ids_a, ids_b = data_fingerprint(mine.dataset), data_fingerprint(theirs.dataset)
    if ids_a["dataset"] != ids_b["dataset"] and a.name == b.name:
        out.append(f"dataset {ids_b['dataset']!r} vs {ids_a['dataset']!r}")
    for part in ("users", "items"):
        if ids_a[part] != ids_b[part]:
            count_a, count_b = ids_a[part]["count"], ids_b[part]["count"]
            counts = f"{count_b} vs {count_a}" if count_a != count_b else f"both {count_a}"
            out.append(f"other {part[:-1]} ids ({counts})")
    return out


def check_comparable(
    loaded: LoadedRun,
    other: LoadedRun,
    site: str,
    reps: dict[str, torch.Tensor] | None = None,
) -> None:
    """Refuse a ``--compare`` run whose rows of the probed kind are not the same instances.

    ITDA atoms are row indices, so the two models' sites must index the same users (a user
    site) or the same items (an item site) in the same order, learnt from the same data
    (:func:`data_differences`: the same ids can name other users, as ``0..U-1`` of two
    synthetic datasets do; a different split of the data is fine), and the other model must
    have the site too. ``reps``: the probed model's representations when the caller has them
    (only their names and shapes are read), else they are collected here.

    Raises:
        DataError: the ids or the data differ (the message names both run folders and what
            differs), or the other model has no such site (the message lists its sites).
    """
    kind = "user"
    reps = reps if reps is not None else collect_representations(loaded.model)
    if site in reps:
        n_users, n_items = int(loaded.model.n_users or 0), int(loaded.model.n_items or 0)
        with contextlib.suppress(ProbeSiteError):  # run_probe names the problem with the site
            kind = site_kind(site, reps[site], n_users, n_items)
    vocab = "users" if kind == "user" else "items"
    mine = getattr(loaded.dataset, vocab).ids
    theirs = getattr(other.dataset, vocab).ids
    if len(mine) != len(theirs) or not np.array_equal(mine, theirs):
        raise DataError(
            f"{other.run_dir} was trained on other {vocab} than {loaded.run_dir}; ITDA "
            f"similarity of {'an' if kind == 'item' else 'a'} {kind} site needs the same "
            f"{vocab} in the same order"
        )
    differences = data_differences(loaded, other)
    if differences:
        raise DataError(
            f"{other.run_dir} was trained on other data than {loaded.run_dir} "
            f"({'; '.join(differences)}); ITDA similarity needs two models of the same data "
            "(a different split of it is fine)"
        )
    theirs_reps = collect_representations(other.model)
    if site in reps and (site not in theirs_reps or len(theirs_reps[site]) != len(reps[site])):
        # found here, before the SAE trains, not as a note in a report without the comparison
        name = other.config.model["name"]
        raise DataError(
            f"{other.run_dir} ({name}) has no site {site!r} to compare with; its "
            f"representations are: {', '.join(sorted(theirs_reps)) or 'none'}"
        )


def _unused(folder: Path) -> Path:
    """``folder``, or ``folder-2``, ``folder-3``, ... when it is taken (two probes a second)."""
    candidate, suffix = folder, 1
    while candidate.exists():
        suffix += 1
        candidate = folder.with_name(f"{folder.name}-{suffix}")
    return candidate


def write_outputs(result: ProbeResult, folder: Path, *, fresh: bool = False) -> Path:
    """Write ``report.html``, ``report.json`` and ``sae.pt`` into ``folder``; return it.

    The files are written into a hidden sibling folder that is renamed to ``folder`` once all
    three exist, so a failure leaves no half-written report (and no mix with older files). If
    ``folder`` was filled meanwhile, the report stays in the sibling, which the error names.
    With ``fresh`` (the default ``probes/<site>-<time>`` name) a taken name gets a suffix.

    Raises:
        DataError: ``folder`` cannot take the report.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        write_report(result, staging)
        atomic_write_bytes(staging / "sae.pt", _export_bytes(result))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if fresh:
        folder = _unused(folder)
    try:
        if folder.is_dir():
            folder.rmdir()  # empty (checked before the probe); fails if it was filled since
        staging.rename(folder)
    except OSError as exc:
        raise DataError(
            f"cannot write the report to {folder} ({exc.strerror or exc}); it was kept in {staging}"
        ) from None
    return folder


def _export_bytes(result: ProbeResult) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(result.sae.export(), buf)
    return buf.getvalue()
