"""A training run end to end, and the run folder it leaves behind.

``train_run`` checks the tracker, loads and splits the data, trains with early stopping, tests
the best epoch once, writes top-k recommendations, and records everything in a run folder::

    runs/<model>-<dataset>-<time>/
        config.yaml          resolved configuration (every default filled in)
        split.npz            the exact train/valid/test split
        metrics.json         best-epoch validation and test metrics per K, timings, and
                             the checksum of the config.yaml they came from
        history.json         per-epoch losses and validation metrics
        checkpoints/best.pt  model weights of the best validation epoch
        checkpoints/last.pt  full training state for --resume
        recommendations.csv  user,item,rank,score (raw ids), top recommend_k per user
        train.log            the log
        run.json             MLflow run id and tracking URI (password hidden), which
                             --resume continues; how the run ended (status: finished,
                             interrupted or failed, with the error); which users and
                             items the split's indices mean (data_ids: count and sha256
                             of each id list); what the set-up model derived from the
                             data (model_inputs: sha256 of each non-persistent buffer,
                             e.g. item feature tables); where the model came from
                             (model_source: distribution, version, entry-point target)

``evaluate_run`` and ``recommend_run`` rebuild data, split and model from such a folder;
``load_run`` refuses one whose data has other user or item ids now than when it was trained,
or gives its model other inputs (item features) than those it was trained with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recsys.config import RunConfig, load_config_dict, validate
from recsys.data.catalog import load_dataset
from recsys.data.dataset import Dataset
from recsys.data.features import encoding_progress
from recsys.data.split import Split, make_split, resolve_split_config
from recsys.errors import ConfigError, DataError, TrackingError
from recsys.eval.evaluator import Evaluator
from recsys.jsonio import dumps_json
from recsys.models.base import Recommender, same_input
from recsys.models.registry import create_model, plugin_autoload_disabled
from recsys.tracking import (
    MlflowTracker,
    Tracker,
    flatten_params,
    logged_metrics,
    make_tracker,
    redact_uri,
)
from recsys.train.checkpoint import atomic_write_text, load_checkpoint, load_weights
from recsys.train.trainer import (
    EpochReport,
    Trainer,
    cannot_fold_in,
    default_num_threads,
    resolve_device,
)

log = logging.getLogger("recsys")


@dataclass
class RunResult:
    run_dir: Path
    valid: dict[str, float]
    test: dict[str, float]
    best_epoch: int
    epochs_run: int
    seconds: float
    tracking_run_id: str | None


def new_run_dir(cfg: RunConfig, dataset_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = cfg.run_name or f"{cfg.model['name']}-{Path(dataset_name).name}-{stamp}"
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    run_dir, suffix = cfg.output_dir / name, 1
    while True:
        try:
            # mkdir claims the name atomically: two runs started in the same second (or with
            # the same run_name) get -2, -3, ... rather than one failing or sharing a folder
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            suffix += 1
            run_dir = cfg.output_dir / f"{name}-{suffix}"


def _attach_log_file(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    if logging.getLogger().level > logging.INFO or logging.getLogger().level == 0:
        logging.getLogger().setLevel(logging.INFO)
    return handler


def make_evaluator(cfg: RunConfig) -> Evaluator:
    return Evaluator(
        topk=cfg.eval.topk,
        metrics=cfg.eval.metrics,
        batch_size=cfg.eval.batch_size,
        device=cfg.train.device,
        memory_mb=cfg.eval.memory_mb,
        item_slices=cfg.eval.item_slices,
        tail_share=cfg.eval.tail_share,
        tail_fraction=cfg.eval.tail_fraction,
        mask_valid_at_test=cfg.eval.mask_valid_at_test,
    )


def build_model(cfg: RunConfig, split: Split, dataset: Dataset | None) -> Recommender:
    # the model's setup may encode item text: a progress bar only if train.progress says so
    with encoding_progress(cfg.train.progress):
        return create_model(cfg.model["name"], **cfg.model_params()).setup(split.train, dataset)


def load_run_config(run_dir: Path) -> RunConfig:
    """The validated ``config.yaml`` of a run folder.

    Raises:
        ConfigError: the file is missing or invalid (naming it); when the run's model is not
            available here, the message also says which distribution trained it
            (``run.json``'s ``model_source``) and how to install it.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder: {path.name} is missing")
    values = load_config_dict(path)
    try:
        return validate(RunConfig, values)
    except ConfigError as exc:
        message = str(exc)
        message = message if str(path) in message else f"{path}: {message}"
        hint = _missing_model_hint(Path(run_dir), values)
        raise ConfigError(f"{message}; {hint}" if hint else message) from None


def _recsys_version() -> str:
    from recsys import __version__

    return __version__


def model_source(name: str) -> dict[str, str]:
    """Where model ``name`` comes from here: ``distribution`` (``recsys`` for a built-in, else
    the plugin's distribution), its ``version`` and the entry-point ``target``
    (``module:Class``), from :func:`~recsys.models.registry.list_models`. A run records it in
    ``run.json``, so a folder whose plugin is gone says which one to install."""
    from recsys.models.registry import PluginWarning, get_model_class, list_models

    with warnings.catch_warnings():
        # another plugin that cannot load is no concern of this run (`recsys models` says so)
        warnings.simplefilter("ignore", PluginWarning)
        info = next((info for info in list_models() if info.name == name), None)
    if info is None or info.source == "builtin":
        cls = get_model_class(name)
        target = info.target if info else f"{cls.__module__}:{cls.__qualname__}"
        return {"distribution": "recsys", "version": _recsys_version(), "target": target}
    return {"distribution": info.source, "version": info.version, "target": info.target}


def _installed_version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except (PackageNotFoundError, ValueError):
        return None


def _missing_model_hint(run_dir: Path, values: dict[str, Any]) -> str:
    """What to do when a run folder's model is not available here (empty when it is, or the
    config is wrong elsewhere): install the distribution that ``run.json``'s
    ``model_source`` says provided it, or turn plugin loading back on."""
    from recsys.models.registry import get_model_class

    model = values.get("model")
    name = model.get("name") if isinstance(model, dict) else None
    if not name:
        return ""
    try:
        get_model_class(str(name))
        return ""
    except ConfigError:
        pass
    off = "plugin loading is off here (RECSYS_DISABLE_PLUGIN_AUTOLOAD is set)"
    source = read_run_record(run_dir).get("model_source")
    if not isinstance(source, dict) or not source.get("distribution"):
        # a run from before model_source was recorded
        if plugin_autoload_disabled():
            return f"the run's model {name!r} may come from a plugin, and {off}"
        return f"the run's model {name!r} may come from a plugin distribution not installed here"
    dist = str(source["distribution"])
    version = str(source.get("version") or "?")
    target = f" ({source['target']})" if source.get("target") else ""
    if dist == "recsys":
        return (
            f"the run was trained with the built-in model {name!r}{target} of recsys {version}; "
            f"this is recsys {_recsys_version()}"
        )
    install = f"`pip install {dist}{f'=={version}' if version != '?' else ''}`"
    trained = (
        f"the run was trained with the plugin model {name!r}{target} from the distribution "
        f"{dist} {version}"
    )
    installed = _installed_version(dist)
    if plugin_autoload_disabled():
        return f"{trained}; {off}: unset it" + ("" if installed else f", and {install}")
    if installed is None:
        return f"{trained}, which is not installed here: {install}"
    return f"{trained}; {dist} {installed} is installed here but does not provide it: {install}"


def _warn_model_version(run_dir: Path, record: dict[str, Any]) -> None:
    """A warning when the run's plugin distribution is installed at another version now."""
    source = record.get("model_source")
    if not isinstance(source, dict):
        return
    dist, then = source.get("distribution"), source.get("version")
    if not dist or not then or dist == "recsys" or then == "?":
        return
    now = _installed_version(str(dist))
    if now is not None and now != then:
        log.warning(
            "%s was trained with %s %s; %s %s is installed, so its model may behave otherwise",
            run_dir, dist, then, dist, now,
        )  # fmt: skip


def _ids_fingerprint(ids: np.ndarray) -> dict[str, Any]:
    text = json.dumps([str(x) for x in ids], ensure_ascii=False)
    return {"count": len(ids), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def data_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """What a run's indices mean: for the users and the items, the number of ids and the
    sha256 of the id list in index order (``run.json``'s ``data_ids``)."""
    return {
        "dataset": dataset.name,
        "users": _ids_fingerprint(dataset.users.ids),
        "items": _ids_fingerprint(dataset.items.ids),
    }


def _data_source(cfg: RunConfig, dataset: Dataset) -> str:
    if cfg.data.path is not None:
        return f"data.path={cfg.data.path}"
    return f"dataset {dataset.name!r}"


def check_run_data(
    run_dir: Path, cfg: RunConfig, dataset: Dataset, split: Split, record: dict[str, Any]
) -> None:
    """That ``dataset`` (loaded now from the run's config) is the data the run in ``run_dir``
    was trained on: its size is the split's shape, and its user and item id lists are the
    ones ``record`` (the run's ``run.json``) fingerprinted at train time. Otherwise the run's
    indices would silently name other users and items. A run from before the fingerprint
    has only its shape checked.

    Raises:
        DataError: the data changed since the run (naming the data and which ids differ).
    """
    where = _data_source(cfg, dataset)
    if split.shape != (dataset.n_users, dataset.n_items):
        raise DataError(
            f"{run_dir}: the data ({where}) now has {dataset.n_users} users x "
            f"{dataset.n_items} items but the run's split has shape {split.shape}; the data "
            "changed since the run"
        )
    recorded = record.get("data_ids")
    if not isinstance(recorded, dict):
        log.info(
            "%s records no fingerprint of its user and item ids (a run from an older recsys): "
            "only the data's size is checked against it",
            run_dir,
        )
        return
    now = data_fingerprint(dataset)
    changed = []
    for part in ("users", "items"):
        then = recorded.get(part)
        if not isinstance(then, dict) or then.get("sha256") == now[part]["sha256"]:
            continue
        count = then.get("count")
        if count == now[part]["count"]:
            how = f"the same number, {count}, but other ids or in another order"
        else:
            how = f"{count} then, {now[part]['count']} now"
        changed.append(f"the {part[:-1]} ids differ ({how})")
    if changed:
        raise DataError(
            f"{run_dir}: the data ({where}) changed since the run: {' and '.join(changed)}, "
            "so the run's indices would name other users and items; restore the data it was "
            "trained on, or train a new run"
        )


def check_model_inputs(run_dir: Path, model: Recommender, record: dict[str, Any]) -> None:
    """That ``model``, set up now on the run's data, gets the inputs it was trained with:
    its :meth:`~recsys.models.base.Recommender.input_fingerprint` (item feature tables,
    token codes, the training graph) against ``record``'s (``run.json``'s ``model_inputs``).
    The id check (:func:`check_run_data`) does not see a renamed token or an edited,
    re-encoded or replaced feature, after which the run's weights would score with other
    feature rows. A run from before the fingerprint is not checked.

    Raises:
        DataError: an input differs (naming the run and the inputs).
    """
    then = record.get("model_inputs")
    if not isinstance(then, dict):
        return
    now = model.input_fingerprint()
    changed = sorted(k for k in {*then, *now} if not same_input(then.get(k), now.get(k)))
    if changed:
        names = ", ".join(changed[:6]) + (
            f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        )
        raise DataError(
            f"{run_dir}: the model's inputs derived from the data (item features) changed "
            f"since the run was trained ({names} differ): a renamed token, an edited or "
            "replaced feature file, or re-encoded text, so its weights would now meet other "
            "feature rows; restore the data it was trained on (and its text-feature cache), "
            "or train a new run"
        )


def _record_model_inputs(run_dir: Path, model: Recommender) -> None:
    """Add the set-up model's input fingerprint to ``run.json`` (``model_inputs``)."""
    _write_json(
        run_dir / "run.json",
        {**read_run_record(run_dir), "model_inputs": model.input_fingerprint()},
    )


def _write_json(path: Path, obj: Any) -> None:
    # strict JSON: a NaN metric (an empty slice) is null, which jq and JavaScript read
    atomic_write_text(path, dumps_json(obj, indent=2, sort_keys=False, default=float) + "\n")


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``run.json`` (``tracking_run_id``, ``tracking_uri``); empty when it is
    missing or unreadable (tracking off, an interrupted or older run)."""
    try:
        record = json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _record_status(run_dir: Path, status: str, error: str | None = None) -> None:
    """Add how the run ended (``finished``, ``interrupted``, ``failed`` with its error) to
    ``run.json``, keeping what it holds; best effort, so the run's own error is not masked."""
    record = {**read_run_record(run_dir), "status": status}
    if error is None:
        record.pop("error", None)
    else:
        record["error"] = error
    try:
        _write_json(run_dir / "run.json", record)
    except OSError as exc:
        log.warning("cannot record the run's status in %s: %s", run_dir / "run.json", exc)


def _reopen_run(tracker: Tracker, run_dir: Path) -> bool:
    """Continue the MLflow run an interrupted run started (its id is in ``run.json``), so a
    resumed run's epochs land in one MLflow run; False when there is none to continue here
    (tracking off, no id, or a store that does not have it), and a new run is started."""
    if not isinstance(tracker, MlflowTracker):
        return False
    run_id = read_run_record(run_dir).get("tracking_run_id")
    if not run_id:
        return False
    try:
        tracker.reopen(str(run_id))
    except TrackingError as exc:
        log.warning(
            "cannot continue MLflow run %s (%s); the resume is a new MLflow run", run_id, exc
        )
        return False
    log.info("continuing MLflow run %s", run_id)
    return True


def check_train_settings(cfg: RunConfig) -> Recommender:
    """The model's own check of ``cfg.train`` (:meth:`Recommender.check_train_config`; DNIS:
    enough epochs for its schedule), and that a ``heldout_users`` split has a model that can
    fold its users in. The trainer makes both checks too; ``recsys train``, ``recsys dnis``
    and ``recsys tune`` make them first, before data is read, a run folder exists or Ray
    starts.

    Returns:
        The model it checked (not set up), for callers that ask it more.

    Raises:
        ConfigError: the model's message, or the fold-in refusal.
    """
    model = create_model(cfg.model["name"], **cfg.model_params())
    if cfg.split.strategy == "heldout_users" and not model.fold_in:
        raise cannot_fold_in(cfg.model["name"])
    model.check_train_config(cfg.train)
    return model


def train_run(cfg: RunConfig, resume_dir: Path | None = None) -> RunResult:
    """Run ``cfg`` (or resume the run in ``resume_dir``) and return its metrics and folder.

    A ``resume_dir`` with nothing to resume (:func:`nothing_to_resume`) is a ConfigError.
    """
    if resume_dir is not None and (done := nothing_to_resume(resume_dir, cfg)) is not None:
        raise ConfigError(done)
    tic = time.perf_counter()
    resolve_device(cfg.train.device)  # asking for a GPU that is not there fails here
    check_train_settings(cfg)  # before any data is read or a run folder exists
    torch.set_num_threads(cfg.train.num_threads or default_num_threads())
    # the tracker is checked before any data is read, so a bad URI fails fast
    tracker = make_tracker(
        cfg.tracking.enabled, cfg.tracking.uri, cfg.output_dir.resolve(), cfg.tracking.experiment
    )
    # bad data and splits that cannot work fail here, before a run folder exists
    dataset = load_dataset(cfg.data)
    cfg = cfg.model_copy(update={"split": resolve_split_config(dataset, cfg.split)})
    check_train_settings(cfg)  # again: the dataset card may have set the split strategy
    identity = {
        "data_ids": data_fingerprint(dataset),
        "model_source": model_source(cfg.model["name"]),
    }
    split, saved = None, None
    if resume_dir is not None and (Path(resume_dir) / "split.npz").is_file():
        # the data must still be what the run was trained on, checked before the folder is
        # written to (train.log, run.json)
        saved = Split.load(Path(resume_dir) / "split.npz")
        record = read_run_record(resume_dir)
        check_run_data(Path(resume_dir), cfg, dataset, saved, record)
        if isinstance(record.get("model_inputs"), dict):
            # a model set up only to compare its inputs (the trainer sets up its own)
            check_model_inputs(Path(resume_dir), build_model(cfg, saved, dataset), record)
        _warn_model_version(Path(resume_dir), record)
    else:
        split = make_split(dataset, cfg.split)
    if resume_dir is not None:
        run_dir = Path(resume_dir)
    else:
        run_dir = new_run_dir(cfg, dataset.name)
        atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    handler = _attach_log_file(run_dir)
    try:
        log.info("run folder %s", run_dir)
        log.info("dataset %s", dataset)
        split_path = run_dir / "split.npz"
        if split is None:
            split = saved
        else:
            split.save(split_path)
        log.info("split %s", split)
        # which ids the split's indices mean, recorded with the split (a resume keeps the
        # record's MLflow run id until the tracker has started)
        _write_json(run_dir / "run.json", {**read_run_record(run_dir), **identity})
        if not (resume_dir is not None and _reopen_run(tracker, run_dir)):
            tracker.start(
                run_dir.name,
                flatten_params(cfg.model_dump(mode="json")),
                tags={
                    "model": cfg.model["name"],
                    "dataset": dataset.name,
                    "run_dir": str(run_dir.resolve()),
                },
            )
        uri = getattr(tracker, "tracking_uri", None)
        _write_json(
            run_dir / "run.json",
            {
                # a resumed run keeps what it recorded (model_inputs, status) until it is
                # rewritten: a resume that fails before training must still find them
                **(read_run_record(run_dir) if resume_dir is not None else {}),
                "tracking_run_id": tracker.run_id,
                "tracking_uri": uri and redact_uri(uri),
                **identity,
            },
        )
        tracker.log_dict(cfg.model_dump(mode="json"), "config.yaml")
        result = _train_and_test(cfg, dataset, split, run_dir, tracker, resume_dir is not None)
        result.seconds = time.perf_counter() - tic
        tracker.log_artifact(run_dir / "metrics.json")
        tracker.log_artifact(run_dir / "recommendations.csv")
        tracker.log_artifact(run_dir / "checkpoints" / "best.pt", "checkpoints")
        tracker.log_artifact(run_dir / "train.log")
        tracker.end("FINISHED")
        _record_status(run_dir, "finished")
        return result
    except KeyboardInterrupt:
        log.warning("interrupted; continue with `recsys train --resume %s`", run_dir)
        _record_status(run_dir, "interrupted")
        tracker.end("KILLED")
        raise
    except BaseException as exc:
        # the folder says why it has no metrics: train.log and run.json name the error (the
        # console has it from the CLI already, so only the file gets this line)
        handler.handle(
            log.makeRecord(
                log.name, logging.ERROR, __file__, 0, "run failed: %s: %s",
                (type(exc).__name__, exc), None,
            )
        )  # fmt: skip
        _record_status(run_dir, "failed", f"{type(exc).__name__}: {exc}")
        tracker.end("FAILED")
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _train_and_test(
    cfg: RunConfig,
    dataset: Dataset,
    split: Split,
    run_dir: Path,
    tracker: Tracker,
    resume: bool,
) -> RunResult:
    model = create_model(cfg.model["name"], **cfg.model_params())

    def log_epoch(report: EpochReport) -> None:
        metrics = {f"train/{k}": v for k, v in report.train.items()}
        if report.valid:
            metrics.update(logged_metrics("valid", report.valid))
        metrics["epoch_seconds"] = report.seconds
        tracker.log_metrics(metrics, step=report.epoch)

    trainer = Trainer(
        model,
        split,
        cfg.train,
        make_evaluator(cfg),
        checkpoint_dir=run_dir / "checkpoints",
        callbacks=[log_epoch],
        dataset=dataset,
        on_setup=lambda set_up: _record_model_inputs(run_dir, set_up),
    )
    with encoding_progress(cfg.train.progress):  # fit sets the model up (--quiet: no bar)
        fit = trainer.fit(resume=resume)
    test = trainer.evaluate("test")
    log.info(
        "best epoch %d; valid %s=%.4f",
        fit.best_epoch,
        cfg.train.valid_metric,
        fit.best_valid.get(cfg.train.valid_metric, float("nan")),
    )
    # the selected epoch's validation metrics, as a tune experiment logs its best trial's:
    # the run's last valid/* points are the last epoch's, not the chosen one's
    tracker.log_metrics(logged_metrics("best_valid", fit.best_valid))
    tracker.log_metrics(logged_metrics("test", test))
    tracker.log_metrics({"best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run})
    metrics = {
        "model": cfg.model["name"],
        "dataset": dataset.name,
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "stopped_early": fit.stopped_early,
        "valid": fit.best_valid,
        "test": test,
        # the config these results came from: `--resume` finds a finished run by it
        "config_sha256": _config_sha256(run_dir),
    }
    _write_json(run_dir / "metrics.json", metrics)
    _write_json(run_dir / "history.json", fit.history)
    for path in model.write_artifacts(run_dir, fit.history):
        tracker.log_artifact(path)
    recs = recommend(model, dataset, split, make_evaluator(cfg), cfg.recommend_k)
    # like the other files: an interrupt or a full disk leaves the old file or none, never
    # a truncated one next to a complete metrics.json
    atomic_write_text(run_dir / "recommendations.csv", recs.to_csv(index=False))
    return RunResult(
        run_dir, fit.best_valid, test, fit.best_epoch, fit.epochs_run, 0.0, tracker.run_id
    )


def load_run(
    run_dir: Path, device: str | None = None
) -> tuple[RunConfig, Dataset, Split, Recommender]:
    """Config, dataset, split and best model of a finished run folder.

    ``device`` (default: the run's ``train.device``) is where the model goes; it is also
    written into the returned config, so evaluators made from it score there.

    Raises:
        DataError: the data loaded now is not what the run was trained on
            (:func:`check_run_data`), or gives the model other inputs
            (:func:`check_model_inputs`), or ``split.npz`` is missing.
        ConfigError: ``config.yaml`` is invalid, or names a model not available here
            (:func:`load_run_config`).
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if device is not None:
        cfg = validate(
            RunConfig,
            {
                **cfg.model_dump(mode="json"),
                "train": {**cfg.train.model_dump(mode="json"), "device": device},
            },
        )
    dataset = load_dataset(cfg.data)
    split_path = run_dir / "split.npz"
    if not split_path.is_file():
        raise DataError(f"{run_dir}: split.npz is missing; the run did not get past splitting")
    split = Split.load(split_path)
    record = read_run_record(run_dir)
    check_run_data(run_dir, cfg, dataset, split, record)
    _warn_model_version(run_dir, record)
    model = build_model(cfg, split, dataset)
    check_model_inputs(run_dir, model, record)
    checkpoint = run_dir / "checkpoints" / "best.pt"
    load_weights(model, load_checkpoint(checkpoint), checkpoint)
    model.to(resolve_device(cfg.train.device))
    model.eval()
    return cfg, dataset, split, model


def check_run_finished(run_dir: Path) -> None:
    """Refuse a run whose ``run.json`` says it failed, with its recorded error, even when it
    has a ``metrics.json`` (from before the failure, or from an earlier attempt that a failed
    resume went on from). One interrupted (or still training) is used at its best
    checkpoint so far, with a warning. A folder without ``run.json`` (an older run) is used
    as it is; one whose ``run.json`` cannot be read, with a warning.

    Raises:
        DataError: the run failed (quoting its error).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        return  # not a run folder: load_run says so
    record = read_run_record(run_dir)
    tested = (run_dir / "metrics.json").is_file()
    status = record.get("status")
    if status == "failed":
        error = record.get("error") or "no error recorded"
        if not tested:
            raise DataError(
                f"{run_dir}: the run failed before it was tested ({error}); train it again"
            )
        raise DataError(
            f"{run_dir}: the run failed ({error}), so its metrics.json and checkpoints may come "
            f"from different attempts; `recsys train --resume {run_dir}` finishes it, or train "
            "it again"
        )
    if not record and (run_dir / "run.json").exists():
        log.warning(
            "%s cannot be read: how the run ended is unknown; using the run as it is",
            run_dir / "run.json",
        )
    if tested:
        if status == "interrupted":
            log.warning(
                "%s was interrupted after it was tested: its metrics.json may come from an "
                "earlier attempt; using its best checkpoint so far (`recsys train --resume %s` "
                "finishes it)",
                run_dir,
                run_dir,
            )
        return
    log.warning(
        "%s has no metrics.json: the run was interrupted or is still training; using its best "
        "checkpoint so far (`recsys train --resume %s` finishes an interrupted run)",
        run_dir,
        run_dir,
    )


RESUME_DISPLAY_KEYS = ("train.progress",)
"""Settings ``--resume`` may change: they change only what the console shows, not what the
run computes, so ``config.yaml`` is not rewritten for them."""


def _dotted(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def override_changes(
    cfg: RunConfig, overrides: list[str], ignore: tuple[str, ...] = ()
) -> list[str]:
    """``key: old -> new`` for every setting of ``cfg`` that the ``key=value`` overrides would
    change, the keys in ``ignore`` left out; empty when they only repeat its values. What
    ``--resume`` refuses (the run or experiment continues as its folder describes it); an
    invalid override is a ConfigError."""
    from recsys.config import apply_overrides

    if not overrides:
        return []
    values = cfg.model_dump(mode="json")
    # both sides validated the same way, so only what the overrides set can differ
    old = _dotted(validate(RunConfig, values).model_dump(mode="json"))
    new = _dotted(validate(RunConfig, apply_overrides(values, overrides)).model_dump(mode="json"))
    return [
        f"{key}: {dumps_json(old.get(key))} -> {dumps_json(new.get(key))}"
        for key in sorted(old.keys() | new.keys())
        if key not in ignore and old.get(key) != new.get(key)
    ]


def _config_sha256(run_dir: Path) -> str | None:
    from recsys.data.catalog import sha256_file

    try:
        return sha256_file(Path(run_dir) / "config.yaml")
    except OSError:
        return None


def nothing_to_resume(run_dir: Path, cfg: RunConfig) -> str | None:
    """Why ``recsys train --resume`` has no work in ``run_dir``, or None when it has some.

    A run has nothing to resume when ``run.json`` says it finished and ``metrics.json`` holds
    the results of the ``config.yaml`` it has now (``metrics.json`` records that file's
    checksum). A run that was interrupted or failed (in testing too) has work left, and so
    has one whose ``config.yaml`` was edited after it finished: resume then does what the
    file says (more epochs, say). For a run from before the checksum, finished means that
    its config (``cfg``) leaves no epoch to train.
    """
    from recsys.models.registry import get_model_class

    run_dir = Path(run_dir)
    if read_run_record(run_dir).get("status") != "finished":
        return None
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        epochs_run, best_epoch = int(metrics["epochs_run"]), metrics.get("best_epoch")
        stopped_early = bool(metrics.get("stopped_early"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    recorded = metrics.get("config_sha256")
    if recorded is not None and recorded != _config_sha256(run_dir):
        return None
    if get_model_class(cfg.model["name"]).batch_kind == "none":
        how = f"{cfg.model['name']} fits in closed form, in one step"
    elif stopped_early:
        how = (
            f"early stopping ended it after {epochs_run} epochs "
            f"(train.patience={cfg.train.patience})"
        )
    elif epochs_run >= cfg.train.epochs:
        how = f"it trained all {epochs_run} epochs of train.epochs={cfg.train.epochs}"
    elif recorded is not None:
        how = f"the model's schedule ended it after {epochs_run} epochs"
    else:
        return None
    return (
        f"run {run_dir} already finished: {how}, best epoch {best_epoch}, tested; nothing to "
        f"resume (its results are in {run_dir / 'metrics.json'})"
    )


def evaluate_run(run_dir: Path, device: str | None = None) -> dict[str, dict[str, float]]:
    """Re-evaluate a run's best checkpoint on its validation and test parts."""
    check_run_finished(run_dir)
    cfg, dataset, split, model = load_run(run_dir, device)
    trainer = Trainer(
        model,
        split,
        cfg.train.model_copy(update={"progress": False}),
        make_evaluator(cfg),
        dataset=dataset,
    )
    return {"valid": trainer.evaluate("valid"), "test": trainer.evaluate("test")}


def recommend(
    model: Recommender,
    dataset: Dataset,
    split: Split,
    evaluator: Evaluator,
    k: int,
    users: np.ndarray | None = None,
    exclude_seen: bool = True,
) -> pd.DataFrame:
    """Top-``k`` items per user as a frame ``user,item,rank,score`` with raw ids.

    Items the user has interacted with anywhere in the split are excluded unless
    ``exclude_seen`` is false.
    """
    if users is None:
        users = np.arange(dataset.n_users)
    k = min(k, dataset.n_items)
    exclude: list[sp.csr_array] = [split.train, split.valid, split.test] if exclude_seen else []
    if exclude_seen and split.foldin is not None:
        exclude.append(split.foldin)
    # held-out users are scored from their fold-in rows
    history = split.scoring_history(model.fold_in)
    model.eval()
    with torch.no_grad():
        items, scores = evaluator.topk(model.scorer(history), users, k, exclude=exclude)
    # slots past a user's rankable items come back as item -1 with score -inf
    keep = (items >= 0).reshape(-1)
    return pd.DataFrame(
        {
            "user": np.repeat(dataset.users.raw(users), k)[keep],
            "item": dataset.items.raw(items.reshape(-1)[keep]),
            "rank": np.tile(np.arange(1, k + 1), len(users))[keep],
            "score": scores.reshape(-1)[keep],
        }
    )


def recommend_run(
    run_dir: Path,
    k: int | None = None,
    users: list[str] | np.ndarray | pd.Series | str | None = None,
    exclude_seen: bool = True,
    device: str | None = None,
) -> pd.DataFrame:
    """Top-``k`` recommendations from a run folder's best model, for all (``users`` None) or
    the given users (raw ids; one string is one id). ``k`` None takes the run's
    ``recommend_k`` (the length of the run's own recommendations.csv)."""
    if isinstance(users, str):
        users = [users]  # not its characters
    if users is not None:
        seen: set[str] = set()
        for user in map(str, users):  # ids compare as strings, as in the dataset's vocabulary
            if user in seen:
                raise DataError(f"user id {user!r} is given more than once")
            seen.add(user)
    check_run_finished(run_dir)
    cfg, dataset, split, model = load_run(run_dir, device)
    index = None if users is None else dataset.users.index(users)
    top = cfg.recommend_k if k is None else k
    return recommend(model, dataset, split, make_evaluator(cfg), top, index, exclude_seen)
