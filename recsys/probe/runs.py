"""Probing a run folder: load the trained model, probe it, write and log the report.

``recsys probe RUN_OR_CHECKPOINT`` accepts a run folder written by ``recsys train`` or a
checkpoint file inside one (``<run>/checkpoints/best.pt``, or ``last.pt`` to probe the last
epoch instead of the best). The report lands in ``<run>/probes/<site>-<time>/`` unless an
output folder is given::

    report.html   the self-contained page
    report.json   the same numbers
    sae.pt        the trained SAE (``TopKSAE.from_export(torch.load(...))``)

MLflow: the probe is recorded as a *child run* of the training run (tag
``mlflow.parentRunId``, run name ``probe-<site>``) in the training run's store, with the probe
configuration as params, the headline numbers and the per-epoch SAE curves as metrics, and
``report.html``/``report.json`` as artifacts. When the training run is not in the store (it was
trained with ``--no-tracking``, or another URI is given) the probe gets a run of its own in the
same experiment, tagged with the run folder. The URI is ``--tracking-uri``, else the training
run's, else ``$RECSYS_TRACKING_URI``, else ``sqlite:///<folder holding the run>/mlflow.db``
(where ``recsys train`` put it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from recsys.config import RunConfig
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.errors import DataError, TrackingError
from recsys.experiment import load_run
from recsys.models.base import Recommender
from recsys.probe.labeller import load_labeller
from recsys.probe.pipeline import ProbeConfig, ProbeResult, run_probe
from recsys.probe.report import write_report
from recsys.tracking import (
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
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
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
    """Load the run's config, data, split and the model with the checkpoint's weights."""
    run_dir, checkpoint = resolve_run(path)
    cfg, dataset, split, model = load_run(run_dir)
    if checkpoint.resolve() != (run_dir / "checkpoints" / "best.pt").resolve():
        load_weights(model, load_checkpoint(checkpoint), checkpoint)
        model.eval()
    return LoadedRun(run_dir, checkpoint, cfg, dataset, split, model)


def _training_run_id(run_dir: Path) -> str | None:
    path = run_dir / "run.json"
    try:
        return json.loads(path.read_text()).get("tracking_run_id")
    except (OSError, ValueError, AttributeError):
        return None


def make_probe_tracker(
    loaded: LoadedRun, enabled: bool, uri: str | None, experiment: str | None
) -> Tracker:
    """The tracker of a probe: a child of the training run when the store has it."""
    if not enabled:
        return NullTracker()
    resolved = resolve_tracking_uri(uri or loaded.config.tracking.uri, loaded.run_dir.parent)
    check_tracking_uri(resolved)
    name = experiment or loaded.config.tracking.experiment
    parent = _training_run_id(loaded.run_dir)
    if parent:
        try:
            return MlflowTracker(resolved, experiment=name, parent_run_id=parent)
        except TrackingError as exc:
            log.info("training run %s not found at %s (%s)", parent, redact_uri(resolved), exc)
    return MlflowTracker(resolved, experiment=name)


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
    for name in ("untrained", "neurons"):
        if name in s:
            out[f"probe/{name}/n_interpretable"] = s[name]["n_interpretable"]
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
    labeller = load_labeller(config.labeller)  # a bad spec fails before any work
    loaded = load_trained(path)
    tracker = make_probe_tracker(loaded, tracking, tracking_uri, experiment)
    other = None
    if compare is not None:
        second = load_trained(compare)
        if list(second.dataset.users.ids) != list(loaded.dataset.users.ids):
            raise DataError(
                f"{second.run_dir} was trained on other users than {loaded.run_dir}; "
                "ITDA similarity needs the same users"
            )
        other = second.model
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = (
        Path(output_dir) if output_dir else loaded.run_dir / "probes" / f"{config.site}-{stamp}"
    )
    tracker.start(
        f"probe-{config.site}",
        flatten_params(config.model_dump(mode="json"), prefix="probe."),
        tags={
            "kind": "probe",
            "model": loaded.config.model["name"],
            "dataset": loaded.dataset.name,
            "run_dir": str(loaded.run_dir.resolve()),
            "checkpoint": str(loaded.checkpoint.resolve()),
        },
    )
    try:
        result = run_probe(
            loaded.model,
            loaded.dataset,
            loaded.split,
            config,
            compare=other,
            labeller=labeller,
            model_name=loaded.config.model["name"],
        )
        result.setup["run_dir"] = str(loaded.run_dir)
        result.setup["checkpoint"] = str(loaded.checkpoint)
        result.setup["tracking_run_id"] = getattr(tracker, "run_id", None)
        html_path, json_path = write_report(result, folder)
        buffer = _export_bytes(result)
        atomic_write_bytes(folder / "sae.pt", buffer)
        for row in result.history:
            tracker.log_metrics(
                {f"probe/epoch/{k}": v for k, v in row.items() if k != "epoch" and v == v},
                step=int(row["epoch"]),
            )
        tracker.log_metrics(headline_metrics(result))
        tracker.log_artifact(html_path, "probe")
        tracker.log_artifact(json_path, "probe")
        tracker.end("FINISHED")
    except KeyboardInterrupt:
        tracker.end("KILLED")
        raise
    except BaseException:
        tracker.end("FAILED")
        raise
    return result, folder


def _export_bytes(result: ProbeResult) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(result.sae.export(), buf)
    return buf.getvalue()
