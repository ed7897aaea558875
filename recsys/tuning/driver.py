"""The ``recsys tune`` driver: a Ray Tune experiment around the trainer, and what it leaves.

:func:`run_tune` loads the data once, starts or joins Ray, runs the trials (:mod:`.trainable`)
under a scheduler (ASHA by default) and a search algorithm, then tests the best configuration
once and writes an experiment folder::

    runs/tune-<model>-<dataset>-<time>/
        tune.json          options, metric, model, dataset, MLflow ids, checksums of
                           base_config.yaml and split.npz (what --resume reads)
        base_config.yaml   the run config every trial starts from
        space.yaml         the search space
        split.npz          the split every trial used
        ray/               Ray Tune's experiment: state, trial folders, checkpoints
        trials.json        each trial's Ray status and failure count
        mlflow_runs.json   trial id -> MLflow child run id
        trials.csv         one row per trial: params, epochs, stop reason, best validation
        trials.png         every trial's validation curve, coloured by how it ended
        best_config.yaml   the best trial's full config; ``recsys train -c`` accepts it as is
        best_model.pt      the best trial's best-epoch weights
        summary.json       best trial, its validation and test metrics, totals, timings

:func:`resume_tune` continues an interrupted experiment from that folder.

Selection uses validation metrics only: trials report validation metrics (never test ones),
the best trial is the one with the highest validation value of ``train.valid_metric`` at any
epoch, and the test split is evaluated once, for that trial's best epoch, in the driver.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import socket
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recsys.config import RunConfig, validate
from recsys.data.catalog import load_dataset, sha256_file
from recsys.data.dataset import Dataset
from recsys.data.split import Split, make_split, resolve_split_config
from recsys.errors import ConfigError
from recsys.jsonio import dumps_json
from recsys.tracking import (
    NullTracker,
    Tracker,
    check_tracking_uri,
    flatten_params,
    logged_metrics,
    redact_uri,
    resolve_tracking_uri,
)
from recsys.train.checkpoint import atomic_write_bytes, atomic_write_text, load_checkpoint
from recsys.tuning.space import SearchSpace, check_against, set_dotted
from recsys.tuning.trainable import (
    InjectedFault,
    best_metric_key,
    metric_key,
    plain_value,
    trial_run_config,
)

__all__ = [
    "TrialRow",
    "TuneOptions",
    "TuneOutcome",
    "best_config_header",
    "check_scheduler_options",
    "check_tunable",
    "format_trials_table",
    "max_trial_epochs",
    "resume_tune",
    "run_tune",
    "trials_frame",
]

log = logging.getLogger("recsys")

RAY_DIR = "ray"
"""Name of Ray Tune's experiment inside the experiment folder."""
_FLAGS = {
    "grace_period": "--grace-period",
    "reduction_factor": "--reduction-factor",
    "brackets": "--brackets",
}
_FINAL_STATUSES = ("TERMINATED", "ERROR")
_NO_RESULT = ("diverged", "refused")
"""Stop reasons of trials that are no result, whatever they validated."""


class TuneOptions(BaseModel):
    """How to search: trials, scheduler, search algorithm, resources, fault tolerance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_samples: int = Field(10, ge=1)
    """Trials to run (times the grid size when the space has grid axes)."""
    scheduler: Literal["asha", "median", "none"] = "asha"
    """ASHA (successive halving), the median stopping rule, or none (every trial to the end)."""
    grace_period: int = Field(5, ge=1)
    """Epochs every trial runs before a scheduler may stop it."""
    reduction_factor: float = Field(3.0, gt=1)
    """ASHA keeps the best ``1/reduction_factor`` of trials at each rung."""
    brackets: int = Field(1, ge=1)
    """ASHA brackets: bracket ``s`` has its first rung at ``grace_period * reduction_factor**s``
    (Hyperband's hedge against stopping slow starters); Ray assigns each trial a bracket at
    random, favouring those with more rungs. ASHA only."""
    search_alg: Literal["random", "optuna"] = "random"
    """Random/grid sampling (Ray's variant generator) or Optuna's TPE (needs ``optuna``)."""
    seed: int = Field(0, ge=0)
    """Seed of the search algorithm (which configurations are drawn)."""
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    """GPUs per trial; fractions share a GPU (0.5 puts two trials on one)."""
    max_concurrent: int | None = Field(None, ge=1)
    """At most this many trials at once; None lets the resources decide."""
    max_failures: int = Field(2, ge=0)
    """Restarts (from the last checkpoint) allowed per trial after a crash."""
    verbose: int = Field(1, ge=0, le=3)
    """Ray Tune's console verbosity (0 silent, 1 status table, 2-3 more)."""

    @model_validator(mode="after")
    def _brackets_need_asha(self) -> TuneOptions:
        if self.brackets > 1 and self.scheduler != "asha":
            raise ValueError(
                f"--brackets {self.brackets} applies to --scheduler asha only (got "
                f"{self.scheduler!r})"
            )
        return self


@dataclass
class TrialRow:
    """One trial's outcome."""

    trial_id: str
    status: str
    params: dict[str, Any]
    epochs: int
    best_value: float
    best_epoch: int
    stop_reason: str
    failures: int = 0
    restores: int = 0
    error: str = ""
    device: str = ""
    """The torch device the trial trained on (``cpu``, ``cuda:0``)."""
    node_ip: str = ""
    """The Ray node the trial ran on."""
    mlflow_run_id: str = ""
    path: str = ""
    checkpoint: Any = field(default=None, repr=False)

    def as_record(self, metric: str) -> dict[str, Any]:
        """A flat row for ``trials.csv``."""
        return {
            "trial_id": self.trial_id,
            "status": self.status,
            "stop_reason": self.stop_reason,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            f"best_{metric}": self.best_value,
            **{key: value for key, value in self.params.items()},
            "failures": self.failures,
            "restores": self.restores,
            "device": self.device,
            "node_ip": self.node_ip,
            "mlflow_run_id": self.mlflow_run_id,
            "error": self.error,
            "path": self.path,
        }


@dataclass
class TuneOutcome:
    """What a finished (or interrupted) experiment produced."""

    experiment_dir: Path
    metric: str
    trials: list[TrialRow]
    best: TrialRow | None
    best_config: RunConfig | None
    valid: dict[str, float]
    test: dict[str, float]
    total_epochs: int
    seconds: float
    interrupted: bool
    parent_run_id: str | None
    ray: dict[str, Any]


# --------------------------------------------------------------------------- experiment folder


def new_experiment_dir(output_dir: Path, name: str | None, model: str, dataset: str) -> Path:
    """A fresh experiment folder under ``output_dir`` (a suffix avoids clashes)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = name or f"tune-{model}-{Path(dataset).name}-{stamp}"
    path = Path(output_dir) / base
    suffix = 1
    while True:
        try:
            # exclusive: two experiments started in the same second never share a folder
            path.mkdir(parents=True)
            return path.resolve()
        except FileExistsError:
            suffix += 1
            path = Path(output_dir) / f"{base}-{suffix}"


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj, indent=2, default=str) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


# --------------------------------------------------------------------------- Ray


@contextlib.contextmanager
def ray_session(address: str | None, quiet: bool) -> Iterator[dict[str, Any]]:
    """Join the Ray cluster at ``address`` (or ``auto``), or start a local Ray; yield its facts.

    A Ray already initialised in this process is used as it is (and left running); one this
    function starts is shut down at the end. Without ``address`` a new local instance is
    started even when a ``ray start`` cluster runs on this machine (Ray's own default would
    join that one).
    """
    import ray

    # every trial checkpoints every epoch and keeps two checkpoints, so Ray snapshots its
    # experiment state often by design; its warning about that is noise here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray's newer console output prints its experiment header and TensorBoard hint at every
    # verbosity; its legacy reporter prints nothing at verbosity 0
    console_before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    if quiet:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    started = False
    if not ray.is_initialized():
        common = {"log_to_driver": not quiet, "logging_level": logging.WARNING}
        if address:
            _check_reachable(address)
        try:
            if address:
                ray.init(address=address, **common)
            else:
                with _quiet_default_auth_notice():
                    ray.init(address="local", include_dashboard=False, **common)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            if not address:
                raise ConfigError(f"cannot start a local Ray instance: {exc}") from exc
            raise ConfigError(
                f"cannot join the Ray cluster at {address}: {exc}. Check that its head runs "
                "(`ray status` there) and, since clusters use token authentication by "
                "default, that RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN "
                "or ~/.ray/auth_token) are set here"
            ) from exc
        started = True
    try:
        context = ray.get_runtime_context()
        info = {
            "address": context.gcs_address,
            "requested_address": address or "local",
            "nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
            "resources": {k: v for k, v in ray.cluster_resources().items() if "node:" not in k},
        }
        yield info
    finally:
        if quiet:
            if console_before is None:
                os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
            else:
                os.environ["RAY_AIR_NEW_OUTPUT"] = console_before
        if started:
            ray.shutdown()


class _DropMessage(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


@contextlib.contextmanager
def _quiet_default_auth_notice() -> Iterator[None]:
    """Ray (2.5x+) warns on every new local instance that it enabled token authentication by
    default. The instance this driver starts is private to the experiment and shut down at
    its end, so the notice is noise on every ``recsys tune``; other messages stay."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice = _DropMessage("Token authentication is enabled for this Ray cluster")
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing listens at a ``host:port`` address: Ray itself retries for
    minutes, printing connection warnings, before it gives up."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", a ray:// client address, or something Ray will judge itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot reach a Ray head at {address} (--address): {exc.strerror or exc}. Check "
            "the host and port (`ray start --head --port P` prints them; `ray status` on the "
            "head shows it runs)"
        ) from None


def _check_local_gpus(options: TuneOptions, address: str | None) -> None:
    """Fail before any work when trials want GPUs, Ray would start here, and torch sees no CUDA
    device: a trial could not use one anyway. (A Ray already running is checked by its own
    resources once joined, :func:`_check_resources`.)"""
    import ray
    import torch

    if address or options.gpus_per_trial == 0 or ray.is_initialized():
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            f"--gpus-per-trial {options.gpus_per_trial:g}, but torch {torch.__version__} sees "
            "no CUDA device on this machine; use --gpus-per-trial 0, or --address to run the "
            "trials on a Ray cluster with GPUs"
        )


def _check_local_cpus(options: TuneOptions, address: str | None) -> None:
    """Fail before any work when Ray would start here and a trial wants more CPUs than this
    machine has (Ray would start, then no trial could ever be placed)."""
    import ray

    cpus = os.cpu_count()
    if address or ray.is_initialized() or not cpus or options.cpus_per_trial <= cpus:
        return
    raise ConfigError(
        f"--cpus-per-trial {options.cpus_per_trial:g}, but this machine has {cpus} CPUs; "
        f"use at most {cpus}, or --address to run the trials on a Ray cluster"
    )


def _check_device(cfg: RunConfig, options: TuneOptions) -> None:
    """Refuse a ``train.device`` other than the CPU without ``--gpus-per-trial``: a trial
    trains on the GPU Ray assigns it, so the setting would be ignored and every trial would
    silently train on the CPU."""
    import torch

    device = cfg.train.device
    if options.gpus_per_trial == 0 and torch.device(device).type != "cpu":
        raise ConfigError(
            f"train.device={device!r}, but a trial trains on the GPU Ray assigns it and "
            "--gpus-per-trial is 0, so every trial would train on the CPU; give "
            "--gpus-per-trial (e.g. 1, or 0.5 to share a GPU), or set train.device=cpu"
        )


def _check_output(output_dir: Path, name: str | None) -> None:
    """Fail before the data are read when the experiment folder cannot go where asked."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"output folder {output_dir} (--output-dir) is a file, not a folder")
    if name is not None and (not name.strip() or name in (".", "..") or Path(name).name != name):
        raise ConfigError(
            f"--name {name!r} must be a folder name, not a path: the experiment folder goes "
            "in --output-dir"
        )


def _check_resources(info: dict[str, Any], options: TuneOptions, remote: bool) -> None:
    """Fail early (local Ray) or warn (a cluster may autoscale) when a trial cannot fit."""
    have = info["resources"]
    problems = []
    if options.gpus_per_trial > have.get("GPU", 0.0):
        problems.append(
            f"--gpus-per-trial {options.gpus_per_trial:g} (the cluster has "
            f"{have.get('GPU', 0.0):g} GPUs)"
        )
    if options.cpus_per_trial > have.get("CPU", 0.0):
        problems.append(
            f"--cpus-per-trial {options.cpus_per_trial:g} (the cluster has "
            f"{have.get('CPU', 0.0):g} CPUs)"
        )
    if not problems:
        return
    message = f"no trial fits on Ray at {info['address']}: " + "; ".join(problems)
    if remote:
        log.warning("%s; trials wait until the cluster scales up", message)
    else:
        raise ConfigError(message)


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _check_brackets(options: TuneOptions, max_epochs: int) -> None:
    """Fail when an ASHA bracket would have no rung within ``max_epochs`` (Ray would silently
    run its trials to the end)."""
    if options.brackets == 1 or max_epochs <= 1:
        return
    first_rung = min(options.grace_period, max_epochs) * options.reduction_factor ** (
        options.brackets - 1
    )
    if first_rung > max_epochs:
        raise ConfigError(
            f"--brackets {options.brackets}: the last bracket's first rung would be at epoch "
            f"{first_rung:g}, past train.epochs={max_epochs}; use fewer brackets, a smaller "
            "--grace-period or --reduction-factor, or more epochs"
        )


def check_scheduler_options(
    options: TuneOptions, max_epochs: int, given: Collection[str] = ()
) -> None:
    """Refuse scheduler options that would have no effect.

    Args:
        options: the tuning options.
        max_epochs: the most epochs a trial runs (:func:`max_trial_epochs`).
        given: the options the user gave explicitly (``grace_period``, ``reduction_factor``,
            ``brackets``), as opposed to defaults; only those are refused, since a default
            that does not apply (a grace period of 5 for a 3-epoch search) asks for nothing.
            :func:`run_tune` passes the options' ``model_fields_set``.

    Raises:
        ConfigError: an explicit option the scheduler ignores, a grace period that leaves
            the scheduler nothing to stop, or any of the three when a trial is one step (a
            closed-form model such as itemknn or ease, or ``train.epochs=1``).
    """
    one_step = [
        _FLAGS[name] for name in ("grace_period", "reduction_factor", "brackets") if name in given
    ]
    if max_epochs <= 1 and one_step:
        raise ConfigError(
            f"{', '.join(one_step)}: every trial trains in one step (a closed-form model, or "
            "train.epochs=1), so no scheduler stops one; drop "
            f"{'it' if len(one_step) == 1 else 'them'}"
        )
    if "reduction_factor" in given and options.scheduler != "asha":
        raise ConfigError(
            f"--reduction-factor applies to --scheduler asha only (got {options.scheduler!r})"
        )
    if "grace_period" not in given:
        return
    if options.scheduler == "none":
        raise ConfigError("--grace-period applies to --scheduler asha or median, not none")
    if max_epochs > 1 and options.grace_period >= max_epochs:
        raise ConfigError(
            f"--grace-period {options.grace_period}: trials run at most train.epochs="
            f"{max_epochs} epochs, so the {options.scheduler} scheduler could never stop one; "
            "use a grace period below train.epochs, more epochs, or --scheduler none"
        )


def _check_trials(cfg: RunConfig, space: SearchSpace) -> list[tuple[dict[str, Any], int]]:
    """The model's own check of its training settings (``check_train_settings``:
    :meth:`~recsys.models.base.Recommender.check_train_config`, and the fold-in check of a
    ``heldout_users`` split), run on what the trials train with rather than on ``cfg`` alone:
    ``cfg`` (the base config with the space's ``fixed`` values) with each of
    :meth:`~recsys.tuning.space.SearchSpace.check_configurations` set on top. A sampled key's
    base value is no trial's, so it is never judged.

    Returns:
        Each checked configuration with its model's
        :meth:`~recsys.models.base.Recommender.schedule_epochs` (the fewest epochs before
        its model has a saved form).

    Raises:
        ConfigError: some configuration is refused. When every one is, the model's message
            as it is (the sampled values are not the cause, or not the only one); else it
            is prefixed with the space file and the sampled values of a refused
            configuration that no accepted one has.
    """
    from recsys.experiment import check_train_settings

    base = cfg.model_dump(mode="json")
    accepted: list[tuple[dict[str, Any], int]] = []
    refused: list[tuple[dict[str, Any], ConfigError]] = []
    for combo in space.check_configurations():
        try:
            model = check_train_settings(trial_run_config(base, combo))
        except ConfigError as exc:
            refused.append((combo, exc))
            continue
        accepted.append((combo, model.schedule_epochs()))
    if refused and not accepted:
        raise refused[0][1]
    if refused:
        combo, exc = refused[0]
        raise ConfigError(
            f"{space.source}: trials that sample {_sampled(combo, [c for c, _ in accepted])} "
            f"would fail before training: {exc}; leave such values out of the space"
        )
    return accepted


def _sampled(combo: dict[str, Any], others: list[dict[str, Any]]) -> str:
    """``key=value, ...`` for the values of ``combo`` that no configuration in ``others``
    has (what sets it apart from them); all of them when each value is shared with some."""
    own = [key for key, value in combo.items() if all(o.get(key) != value for o in others)]
    return ", ".join(f"{key}={combo[key]!r}" for key in own or combo)


def _check_schedule(
    cfg: RunConfig, options: TuneOptions, needs: list[tuple[dict[str, Any], int]]
) -> None:
    """Refuse a scheduler that may stop trials before their models have a saved form
    (:meth:`~recsys.models.base.Recommender.schedule_epochs`: DNIS prunes after its warm start
    and search), since it would rank and stop them by epochs that are then discarded.
    ``needs`` is :func:`_check_trials`'s: the longest schedule among the sampled
    configurations counts, not the base config's."""
    if options.scheduler == "none" or not needs:
        return
    combo, need = max(needs, key=lambda item: item[1])
    if options.grace_period >= need:
        return
    fine = [c for c, n in needs if n <= options.grace_period]
    which = f" (trials that sample {_sampled(combo, fine)})" if fine else ""
    raise ConfigError(
        f"--scheduler {options.scheduler} with --grace-period {options.grace_period} could "
        f"stop trials before model {cfg.model['name']!r} reaches its saved form after "
        f"{need} epochs{which}; use --scheduler none, or --grace-period {need} or more"
    )


def _scheduler(options: TuneOptions, max_epochs: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    if options.scheduler != "none" and 1 < max_epochs <= options.grace_period:
        log.warning(
            "the grace period (%d epochs) is not below train.epochs=%d: the %s scheduler "
            "stops no trial early",
            options.grace_period,
            max_epochs,
            options.scheduler,
        )

    if options.scheduler == "asha" and max_epochs > 1:
        _check_brackets(options, max_epochs)
        grace = min(options.grace_period, max_epochs)
        return ASHAScheduler(
            time_attr="epoch",
            max_t=max_epochs,
            grace_period=grace,
            reduction_factor=options.reduction_factor,
            brackets=options.brackets,
        )
    if options.scheduler == "median" and max_epochs > 1:
        return MedianStoppingRule(
            time_attr="epoch", grace_period=options.grace_period, min_samples_required=3
        )
    return FIFOScheduler()


def _check_search_alg(options: TuneOptions, space: SearchSpace) -> None:
    """Fail before any work when the search algorithm cannot search ``space``."""
    if len(space.points) > options.num_samples:
        raise ConfigError(
            f"{space.source}: {len(space.points)} points but --num-samples is "
            f"{options.num_samples}; every point is one trial"
        )
    if options.search_alg != "optuna":
        return
    if space.grid_keys:
        raise ConfigError(
            f"{space.source}: key(s) {', '.join(space.grid_keys)} are grid axes, which "
            "the optuna search algorithm does not support; use type: choice, or "
            "--search-alg random"
        )
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--search-alg optuna needs the optuna package: pip install -e '.[tune]'"
        ) from None


def _search_alg(options: TuneOptions, space: SearchSpace) -> Any:
    _check_search_alg(options, space)
    points = [dict(point) for point in space.points] or None
    if options.search_alg == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(points_to_evaluate=points, seed=options.seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # the variant generator limits concurrency itself (Ray ignores max_concurrent_trials for it)
    return BasicVariantGenerator(
        points_to_evaluate=points,
        max_concurrent=options.max_concurrent or 0,
        random_state=options.seed,
    )


def _trainable(
    base: dict[str, Any],
    split: Split,
    dataset: Dataset,
    options: TuneOptions,
    fault: InjectedFault | None,
) -> Any:
    from ray import tune

    from recsys.tuning.trainable import train_trial

    with_data = tune.with_parameters(
        train_trial,
        base=base,
        split=split,
        dataset=dataset,
        cpus_per_trial=options.cpus_per_trial,
        fault=fault,
    )
    return tune.with_resources(
        with_data, {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
    )


def _callbacks(
    experiment_dir: Path, base: dict[str, Any], tracking: dict[str, Any] | None
) -> list[Any]:
    from recsys.tuning.callbacks import MlflowTrialCallback, TrialLedger

    callbacks: list[Any] = [TrialLedger(experiment_dir / "trials.json")]
    if tracking and tracking.get("parent_run_id"):
        callbacks.append(
            MlflowTrialCallback(
                tracking["uri"],
                tracking["experiment"],
                tracking["parent_run_id"],
                base,
                experiment_dir / "mlflow_runs.json",
            )
        )
    return callbacks


# --------------------------------------------------------------------------- the entry points


def run_tune(
    cfg: RunConfig,
    space: SearchSpace,
    options: TuneOptions | None = None,
    *,
    address: str | None = None,
    name: str | None = None,
    fault: InjectedFault | None = None,
    extra_callbacks: list[Any] | None = None,
) -> TuneOutcome:
    """Run a Ray Tune experiment over ``space`` starting from the base config ``cfg``.

    Everything that can be checked is checked before the data are read: the options, the
    space's values, and the model's own check of its training settings on the trial configs
    the space stands for (:func:`_check_trials`). Ray is started or joined before the
    experiment folder is made, so a cluster that cannot be joined leaves no folder and no
    MLflow parent run. A trial whose own config is refused anyway ends ``refused``, without
    retries (:mod:`.trainable`).

    Args:
        cfg: the base run config (``space.fixed`` is applied on top of it).
        space: the search space (:func:`~recsys.tuning.space.load_space`).
        options: :class:`TuneOptions`.
        address: a Ray cluster (``host:port`` or ``auto``); None starts Ray locally.
        name: the experiment folder's name (default ``tune-<model>-<dataset>-<time>``).
        fault: make one trial crash once (fault-tolerance drills; see
            :class:`~recsys.tuning.trainable.InjectedFault`).
        extra_callbacks: more Ray Tune callbacks (run in the driver).
    """
    options = options or TuneOptions()
    tic = time.perf_counter()
    check_tunable(cfg)
    base = cfg.model_dump(mode="json")
    check_against(space, base)  # every candidate value makes a valid config
    _check_search_alg(options, space)
    for key, value in space.fixed.items():
        set_dotted(base, key, value)
    base_cfg = validate(RunConfig, base)
    # options set explicitly (not left to their defaults) must act
    check_scheduler_options(options, _max_epochs(base_cfg), given=options.model_fields_set)
    _check_brackets(options, _max_epochs(base_cfg))
    _check_device(base_cfg, options)
    # the model's own checks, on what the trials sample: else a refused trial fails in Ray
    needs = _check_trials(base_cfg, space)
    _check_schedule(base_cfg, options, needs)
    _check_local_gpus(options, address)
    _check_local_cpus(options, address)
    if address:
        _check_reachable(address)  # before the data are read
    output_dir = base_cfg.output_dir.resolve()
    _check_output(output_dir, name)
    tracker = _parent_tracker(base_cfg)  # checked before any data is read
    dataset = load_dataset(base_cfg.data)
    # trials and best_config.yaml name the split that was used
    resolved = resolve_split_config(dataset, base_cfg.split)
    if resolved != base_cfg.split:
        base_cfg = base_cfg.model_copy(update={"split": resolved})
        _check_trials(base_cfg, space)  # again: the dataset card may have set the strategy
    split = make_split(dataset, base_cfg.split)  # before an experiment folder exists
    base = base_cfg.model_dump(mode="json")
    # Ray starts (or is joined) before the experiment folder exists: a cluster that cannot be
    # joined, or a trial that fits no node of a local Ray, leaves no folder and no MLflow run
    with ray_session(address, quiet=options.verbose == 0) as info:
        _check_resources(info, options, remote=bool(address))
        return _start(
            base_cfg=base_cfg,
            base=base,
            space=space,
            options=options,
            dataset=dataset,
            split=split,
            tracker=tracker,
            output_dir=output_dir,
            name=name,
            address=address,
            fault=fault,
            extra_callbacks=extra_callbacks,
            ray_info=info,
            tic=tic,
        )


def _start(
    *,
    base_cfg: RunConfig,
    base: dict[str, Any],
    space: SearchSpace,
    options: TuneOptions,
    dataset: Dataset,
    split: Split,
    tracker: Tracker,
    output_dir: Path,
    name: str | None,
    address: str | None,
    fault: InjectedFault | None,
    extra_callbacks: list[Any] | None,
    ray_info: dict[str, Any],
    tic: float,
) -> TuneOutcome:
    """:func:`run_tune` once every check passed and Ray runs: write the experiment folder
    (and start the MLflow parent run), then run the experiment."""
    from recsys.experiment import data_fingerprint

    experiment_dir = new_experiment_dir(output_dir, name, base_cfg.model["name"], dataset.name)
    log.info("experiment folder %s", experiment_dir)
    atomic_write_text(experiment_dir / "base_config.yaml", base_cfg.to_yaml())
    atomic_write_text(
        experiment_dir / "space.yaml",
        f"# search space read from {space.source}\n"
        + yaml.safe_dump(space.as_dict(), sort_keys=False),
    )
    split.save(experiment_dir / "split.npz")
    # --resume trains the remaining trials from these files: an edit would make them differ
    # from the finished ones, so their checksums are kept
    checksums = {name: sha256_file(experiment_dir / name) for name in _INPUT_FILES}
    tracking = _start_parent(tracker, base_cfg, space, options, experiment_dir, dataset.name)
    state = {
        "model": base_cfg.model["name"],
        "dataset": dataset.name,
        "metric": base_cfg.train.valid_metric,
        "max_epochs": _max_epochs(base_cfg),
        "space_source": space.source,
        "tuned_keys": list(space.params),
        "options": options.model_dump(mode="json"),
        "address": address,
        "tracking": tracking,
        "created": datetime.now().isoformat(timespec="seconds"),
        "checksums": checksums,
        # what the split's indices mean, as a run folder records it: --resume checks it
        "data_ids": data_fingerprint(dataset),
    }
    _write_json(experiment_dir / "tune.json", state)
    return _execute_tracked(
        experiment_dir,
        base,
        split,
        dataset,
        options,
        state,
        tracker,
        address=address,
        space=space,
        fault=fault,
        extra_callbacks=extra_callbacks,
        ray_info=ray_info,
        tic=tic,
    )


def resume_tune(
    experiment_dir: Path, *, address: str | None = None, verbose: int | None = None
) -> TuneOutcome:
    """Continue the interrupted experiment in ``experiment_dir``.

    Unfinished and errored trials resume from their last checkpoints, finished ones are kept,
    and the callbacks (trial ledger, MLflow child runs) continue their records. ``address``
    defaults to the one the experiment was started with. An experiment that finished has
    nothing to resume (:func:`finished_experiment`): a ConfigError, before Ray starts.
    """
    done = finished_experiment(experiment_dir)
    if done is not None:
        raise ConfigError(done)
    from ray import tune

    from recsys.experiment import check_run_data

    tic = time.perf_counter()
    experiment_dir = Path(experiment_dir).resolve()
    state_path = experiment_dir / "tune.json"
    if not state_path.is_file():
        raise ConfigError(f"{experiment_dir} is not a tune experiment folder: tune.json is missing")
    ray_path = experiment_dir / RAY_DIR
    if not tune.Tuner.can_restore(str(ray_path)):
        raise ConfigError(
            f"{experiment_dir}: no Ray Tune state to resume in {ray_path} (the experiment "
            "stopped before Ray started)"
        )
    state, options = _load_state(state_path)
    if verbose is not None:
        options = options.model_copy(update={"verbose": verbose})
    _check_inputs(experiment_dir, state)
    base_cfg = _load_base_config(experiment_dir / "base_config.yaml")
    base = base_cfg.model_dump(mode="json")
    dataset = load_dataset(base_cfg.data)
    split = Split.load(experiment_dir / "split.npz")
    # data whose ids changed would give the remaining trials other users and items under the
    # same indices (an experiment from before the fingerprint has its size checked only)
    check_run_data(experiment_dir, base_cfg, dataset, split, state)
    address = address if address is not None else state.get("address")
    # Ray first: a cluster that cannot be joined leaves the folder and the MLflow parent run
    # as they were (resumable), not marked as resumed or failed
    with ray_session(address, quiet=options.verbose == 0) as info:
        _check_resources(info, options, remote=bool(address))
        tracker = _reopen_parent(state.get("tracking"))
        state["resumed"] = [
            *state.get("resumed", []),
            datetime.now().isoformat(timespec="seconds"),
        ]
        _write_json(state_path, state)
        return _execute_tracked(
            experiment_dir,
            base,
            split,
            dataset,
            options,
            state,
            tracker,
            address=address,
            space=None,
            fault=None,
            extra_callbacks=None,
            ray_info=info,
            tic=tic,
        )


def finished_experiment(experiment_dir: Path) -> str | None:
    """Why ``--resume`` has nothing to do in ``experiment_dir``, or None when it has work.

    An experiment finished when its ``summary.json`` (written when Ray's run ends, the best
    trial tested) says no trial was interrupted and none ended in an error (``--resume``
    retries errored trials from their checkpoints): resuming it would only start Ray again
    and test the same best trial a second time.
    """
    try:
        summary = _read_json(Path(experiment_dir) / "summary.json")
    except (OSError, ValueError):
        return None  # a damaged summary is rewritten when the experiment ends
    statuses = summary.get("statuses") if isinstance(summary, dict) else None
    if not isinstance(statuses, dict) or summary.get("interrupted") is not False:
        return None
    if statuses.get("ERROR"):
        return None
    best = summary.get("best")
    if isinstance(best, dict):
        result = f"best trial {best.get('trial_id')} tested once"
    else:
        result = "no trial gave a result"
    return (
        f"experiment {experiment_dir} already finished: {summary.get('n_trials')} trials, "
        f"{result}; nothing to resume (see its summary.json and trials.csv)"
    )


def saved_setup(experiment_dir: Path) -> tuple[dict[str, Any], RunConfig] | None:
    """``tune.json`` and ``base_config.yaml`` of an experiment folder (what ``--resume``
    compares repeated options with), or None when either is missing or damaged (then
    :func:`resume_tune` says which)."""
    try:
        state, _ = _load_state(Path(experiment_dir) / "tune.json")
        return state, _load_base_config(Path(experiment_dir) / "base_config.yaml")
    except (OSError, ConfigError):
        return None


_INPUT_FILES = ("base_config.yaml", "split.npz")
"""Files of the experiment folder that --resume trains from."""
_STATE_KEYS = ("model", "dataset", "metric", "max_epochs", "options")
"""Keys of tune.json that --resume needs."""


def _load_state(path: Path) -> tuple[dict[str, Any], TuneOptions]:
    """tune.json and the options in it; a damaged file is a ConfigError naming it."""
    try:
        state = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path} is not valid JSON ({exc}); the experiment cannot resume"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path} must hold a JSON object; the experiment cannot resume")
    missing = [key for key in _STATE_KEYS if key not in state]
    if missing:
        raise ConfigError(f"{path} lacks {', '.join(missing)}; the experiment cannot resume")
    try:
        options = TuneOptions.model_validate(state["options"])
        int(state["max_epochs"])
    except (ValidationError, TypeError, ValueError) as exc:
        problem = _validation_summary(exc) if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"{path}: invalid tuning options: {problem}") from None
    return state, options


def _validation_summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, err['loc'])) or 'options'}: {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()
    )


def _check_inputs(experiment_dir: Path, state: dict[str, Any]) -> None:
    """The files the trials train from are there and, where tune.json has their checksums
    (experiments started by this version on), unchanged since the experiment started."""
    for name in _INPUT_FILES:
        path = experiment_dir / name
        if not path.is_file():
            raise ConfigError(f"{path} is missing; the experiment cannot resume without it")
        expected = (state.get("checksums") or {}).get(name)
        if expected and sha256_file(path) != expected:
            raise ConfigError(
                f"{path} changed since the experiment started; the remaining trials would "
                "train differently from the finished ones. Put the original back, or start a "
                "new experiment (recsys tune -c <the edited config>)"
            )


def _load_base_config(path: Path) -> RunConfig:
    """base_config.yaml as a RunConfig; a damaged file is a ConfigError naming it."""
    try:
        values = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a run config (a mapping of sections)")
    try:
        return validate(RunConfig, values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def max_trial_epochs(cfg: RunConfig, space: SearchSpace) -> int:
    """The most epochs a trial of ``space`` starting from ``cfg`` runs (its ``fixed``
    values applied): ``train.epochs``, or 1 for closed-form models."""
    values = cfg.model_dump(mode="json")
    try:
        for key, value in space.fixed.items():
            set_dotted(values, key, value)
        return _max_epochs(validate(RunConfig, values))
    except ConfigError as exc:
        keys = ", ".join(space.fixed) or "(none)"
        raise ConfigError(f"{space.source}: fixed values ({keys}) are invalid: {exc}") from None


def _max_epochs(cfg: RunConfig) -> int:
    """The most epochs a trial runs: ``train.epochs``, or 1 for closed-form models."""
    from recsys.models.registry import get_model_class

    closed_form = get_model_class(cfg.model["name"]).batch_kind == "none"
    return 1 if closed_form else cfg.train.epochs


def check_tunable(cfg: RunConfig) -> None:
    """ConfigError for a model with no hyper-parameters (pop): there is nothing to tune."""
    from recsys.models.registry import get_model_class

    model_cls = get_model_class(cfg.model["name"])
    if not model_cls.config_class.model_fields:
        raise ConfigError(
            f"model {cfg.model['name']!r} has no hyper-parameters to tune; train it with "
            "`recsys train`"
        )


def _execute_tracked(*args: Any, **kwargs: Any) -> TuneOutcome:
    """:func:`_execute`, ending the parent MLflow run as KILLED or FAILED if it raises."""
    tracker: Tracker = args[6]
    try:
        return _execute(*args, **kwargs)
    except BaseException as exc:
        tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise


def _execute(
    experiment_dir: Path,
    base: dict[str, Any],
    split: Split,
    dataset: Dataset,
    options: TuneOptions,
    state: dict[str, Any],
    tracker: Tracker,
    *,
    address: str | None,
    space: SearchSpace | None,
    fault: InjectedFault | None,
    extra_callbacks: list[Any] | None,
    ray_info: dict[str, Any] | None = None,
    tic: float,
) -> TuneOutcome:
    """Run (``space`` given) or restore (``space`` None) the Ray experiment, then finish it.
    ``ray_info`` is the :func:`ray_session` the caller opened (and checked the resources of);
    without it this function opens one."""
    from ray import tune

    metric = state["metric"]
    max_epochs = int(state["max_epochs"])
    trainable = _trainable(base, split, dataset, options, fault)
    session = (
        contextlib.nullcontext(ray_info)
        if ray_info is not None
        else ray_session(address, quiet=options.verbose == 0)
    )
    with session as info:
        log.info("Ray at %s: %s", info["address"], info["resources"])
        if ray_info is None:
            _check_resources(info, options, remote=bool(address))
        state["ray"] = info
        _write_json(experiment_dir / "tune.json", state)
        if space is None:
            tuner = tune.Tuner.restore(
                str(experiment_dir / RAY_DIR),
                trainable=trainable,
                resume_unfinished=True,
                resume_errored=True,
            )
        else:
            if max_epochs == 1 and options.scheduler != "none":
                log.info("%s trains in one step; no scheduler to stop it", base["model"]["name"])
            callbacks = _callbacks(experiment_dir, base, state.get("tracking"))
            tuner = tune.Tuner(
                trainable,
                param_space=space.to_tune(),
                tune_config=tune.TuneConfig(
                    metric=metric_key(metric),
                    mode="max",
                    num_samples=options.num_samples,
                    scheduler=_scheduler(options, max_epochs),
                    search_alg=_search_alg(options, space),
                    max_concurrent_trials=(
                        options.max_concurrent if options.search_alg != "random" else None
                    ),
                    reuse_actors=True,
                    trial_dirname_creator=_trial_dirname,
                    trial_name_creator=_trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=RAY_DIR,
                    storage_path=str(experiment_dir),
                    failure_config=tune.FailureConfig(max_failures=options.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    callbacks=[*callbacks, *(extra_callbacks or [])],
                    verbose=options.verbose,
                ),
            )
        results = tuner.fit()
        return _finish(experiment_dir, base, split, dataset, results, state, tracker, options, tic)


# --------------------------------------------------------------------------- MLflow parent run


def _start_parent(
    tracker: Tracker,
    cfg: RunConfig,
    space: SearchSpace,
    options: TuneOptions,
    experiment_dir: Path,
    dataset_name: str,
) -> dict[str, Any] | None:
    if not cfg.tracking.enabled:
        return None
    params = flatten_params(cfg.model_dump(mode="json"))
    # a sampled key's base value is not what any trial used: the parent records its
    # distribution (space.<key>) and, at the end, the best trial's value (best.<key>)
    for key in space.params:
        params.pop(key, None)
    params.update({f"tune.{k}": v for k, v in flatten_params(options.model_dump()).items()})
    params.update({f"space.{key}": _describe(dist) for key, dist in space.params.items()})
    tracker.start(
        experiment_dir.name,
        params,
        tags={
            "recsys.kind": "tune",
            "model": cfg.model["name"],
            "dataset": dataset_name,
            "experiment_dir": str(experiment_dir),
        },
    )
    tracker.log_dict(space.as_dict(), "space.yaml")
    return {
        "uri": resolve_tracking_uri(cfg.tracking.uri, cfg.output_dir.resolve()),
        "experiment": cfg.tracking.experiment,
        "parent_run_id": tracker.run_id,
    }


def _describe(dist: Any) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in dist.model_dump().items() if k != "type")
    return f"{dist.type}({fields})"


def _parent_tracker(cfg: RunConfig) -> Tracker:
    """The experiment's tracker: checked before any work, like ``recsys train``'s."""
    from recsys.tracking import MlflowTracker

    if not cfg.tracking.enabled:
        return NullTracker()
    uri = resolve_tracking_uri(cfg.tracking.uri, cfg.output_dir.resolve())
    log.info("MLflow tracking URI %s (experiment %r)", redact_uri(uri), cfg.tracking.experiment)
    check_tracking_uri(uri)
    return MlflowTracker(uri, experiment=cfg.tracking.experiment)


def _reopen_parent(tracking: dict[str, Any] | None) -> Tracker:
    from recsys.tracking import MlflowTracker

    if not tracking or not tracking.get("parent_run_id"):
        return NullTracker()
    check_tracking_uri(tracking["uri"])
    tracker = MlflowTracker(tracking["uri"], tracking["experiment"])
    tracker.reopen(tracking["parent_run_id"])
    return tracker


# --------------------------------------------------------------------------- results


def _finish(
    experiment_dir: Path,
    base: dict[str, Any],
    split: Split,
    dataset: Dataset,
    results: Any,
    state: dict[str, Any],
    tracker: Tracker,
    options: TuneOptions,
    tic: float,
) -> TuneOutcome:
    metric = state["metric"]
    ledger = _read_json(experiment_dir / "trials.json")
    run_ids = _read_json(experiment_dir / "mlflow_runs.json")
    rows = [
        _trial_row(result, metric, int(state["max_epochs"]), ledger, run_ids) for result in results
    ]
    curves = {
        row.trial_id: curve
        for row, result in zip(rows, results, strict=True)
        if (curve := _validation_curve(result, metric)) is not None
    }
    # best first; a diverged trial after every scored one, even if it validated well before
    # it diverged (it is no result: `recsys train -c best_config.yaml` would diverge again)
    rows.sort(key=_rank)
    interrupted = any(row.status not in _FINAL_STATUSES for row in rows)
    trials_frame(rows, metric).to_csv(experiment_dir / "trials.csv", index=False)
    total_epochs = sum(row.epochs for row in rows)
    # when every trial diverged (or was refused) there is no best
    scored = [row for row in rows if _scored(row)]
    best = scored[0] if scored and not interrupted else None
    _plot_trials(experiment_dir, curves, rows, best, metric, options, total_epochs)
    best_cfg, valid, test = None, {}, {}
    if best is not None:
        best_cfg, valid, test = _test_best(experiment_dir, base, split, dataset, best, options)
    summary = {
        "experiment_dir": str(experiment_dir),
        "model": state["model"],
        "dataset": state["dataset"],
        "metric": metric,
        "interrupted": interrupted,
        "n_trials": len(rows),
        "statuses": {s: sum(r.status == s for r in rows) for s in sorted({r.status for r in rows})},
        "stop_reasons": {
            s: sum(r.stop_reason == s for r in rows) for s in sorted({r.stop_reason for r in rows})
        },
        "total_trial_epochs": total_epochs,
        "seconds": time.perf_counter() - tic,
        "ray": state.get("ray"),
        "options": state["options"],
        "best": None
        if best is None
        else {
            "trial_id": best.trial_id,
            "params": best.params,
            "best_epoch": best.best_epoch,
            "epochs": best.epochs,
            f"best_valid_{metric}": best.best_value,
            "valid": valid,
            "test": test,
            "mlflow_run_id": best.mlflow_run_id or None,
        },
        "tracking": state.get("tracking"),
    }
    _write_json(experiment_dir / "summary.json", summary)
    _record_parent(tracker, experiment_dir, best, valid, test, total_epochs, len(rows), interrupted)
    return TuneOutcome(
        experiment_dir=experiment_dir,
        metric=metric,
        trials=rows,
        best=best,
        best_config=best_cfg,
        valid=valid,
        test=test,
        total_epochs=total_epochs,
        seconds=summary["seconds"],
        interrupted=interrupted,
        parent_run_id=(state.get("tracking") or {}).get("parent_run_id"),
        ray=state.get("ray") or {},
    )


def _scored(row: TrialRow) -> bool:
    """Whether a trial is a result: it validated, and neither diverged nor was refused."""
    return math.isfinite(row.best_value) and row.stop_reason not in _NO_RESULT


def _rank(row: TrialRow) -> tuple[int, float]:
    """Sort key, best first: scored trials by value, then diverged ones (by the value they
    had before), then the rest (refused, errored, never started)."""
    if _scored(row):
        return 0, -row.best_value
    return (1, -row.best_value) if math.isfinite(row.best_value) else (2, 0.0)


def trials_frame(rows: list[TrialRow], metric: str) -> pd.DataFrame:
    """The rows of ``trials.csv``, in the order given. A sampled column whose values are all
    integers stays integer even where a trial has none (one that never started): pandas
    would make it float (``256.0``)."""
    frame = pd.DataFrame([row.as_record(metric) for row in rows])
    for column in frame.columns:
        values = [v for row in rows for k, v in row.params.items() if k == column]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            frame[column] = frame[column].astype("Int64")
    return frame


def _trial_row(
    result: Any,
    metric: str,
    max_epochs: int,
    ledger: dict[str, Any],
    run_ids: dict[str, str],
) -> TrialRow:
    path = Path(result.path)
    trial_id = path.name.removeprefix("trial_")
    last = result.metrics or {}
    trial_id = str(last.get("trial_id", trial_id))
    params = {k: plain_value(v) for k, v in (result.config or {}).items()}
    history = result.metrics_dataframe
    key = metric_key(metric)
    best_value, best_epoch = -math.inf, 0
    if history is not None and key in history and len(history):
        # the report of a diverged epoch, or of a refused config, carries a placeholder value,
        # not a measurement: it must not make such a trial the best of an experiment
        column = pd.to_numeric(history[key], errors="coerce").mask(_placeholders(history))
        if column.notna().any():
            at = column.idxmax()
            best_value = float(column[at])
            # reports count epochs trained; users see 0-based indices, as recsys train logs
            best_epoch = int(history.loc[at, "epoch"]) - 1 if "epoch" in history else int(at)
        # the trainer's own pick, as its last measured report states it: a model whose
        # schedule saves only some epochs (DNIS saves a fine-tuning epoch, after pruning) is
        # ranked by the epoch it saves, not by a better score of an epoch it discards
        picked = best_metric_key(metric)
        if picked in history and "best_epoch" in history and column.notna().any():
            last_row = history.loc[column.last_valid_index()]
            value = pd.to_numeric(last_row[picked], errors="coerce")
            if pd.notna(value) and math.isfinite(float(value)):
                best_value, best_epoch = float(value), int(last_row["best_epoch"])
    entry = ledger.get(trial_id, {})
    status = str(entry.get("status", "ERROR" if result.error else "TERMINATED"))
    epochs = int(last.get("epoch", 0) or 0)
    error = ""
    if result.error is not None:
        error = str(result.error).strip().splitlines()[-1][:300] if str(result.error) else ""
        status = "ERROR"
    if status == "ERROR":
        reason = "error"
    elif last.get("refused"):
        reason = "refused"
        error = str(last.get("refusal", ""))
    elif status not in _FINAL_STATUSES:
        reason = "interrupted"
    elif last.get("diverged"):
        reason = "diverged"
    elif epochs >= max_epochs:
        reason = "completed"
    elif last.get("early_stop"):
        reason = "patience"
    else:
        reason = "scheduler"
    return TrialRow(
        trial_id=trial_id,
        status=status,
        params=params,
        epochs=epochs,
        best_value=best_value,
        best_epoch=best_epoch,
        stop_reason=reason,
        failures=int(entry.get("failures", 0)),
        restores=int(last.get("restores", 0) or 0),
        error=error,
        device=str(last.get("device", "")),
        node_ip=str(last.get("node_ip", "")),
        mlflow_run_id=str(run_ids.get(trial_id, "")),
        path=str(path),
        checkpoint=result.checkpoint,
    )


def _test_best(
    experiment_dir: Path,
    base: dict[str, Any],
    split: Split,
    dataset: Dataset,
    best: TrialRow,
    options: TuneOptions,
) -> tuple[RunConfig, dict[str, float], dict[str, float]]:
    """Write best_config.yaml and best_model.pt; evaluate the best epoch on valid and test."""
    import torch

    from recsys.experiment import build_model, make_evaluator
    from recsys.train.trainer import Trainer

    best_cfg = trial_run_config(base, best.params)
    header = best_config_header(experiment_dir, best, best_cfg)
    atomic_write_text(experiment_dir / "best_config.yaml", header + best_cfg.to_yaml())
    if best.checkpoint is None:
        log.warning("trial %s left no checkpoint; its test metrics are not computed", best.trial_id)
        return best_cfg, {}, {}
    with best.checkpoint.as_directory() as folder:
        shutil.copy2(Path(folder) / "best.pt", experiment_dir / "best_model.pt")
    device = "cuda" if options.gpus_per_trial > 0 and torch.cuda.is_available() else "cpu"
    cfg = trial_run_config(base, best.params, device=device, progress=False)
    model = build_model(cfg, split, dataset)
    model.load_state_dict(load_checkpoint(experiment_dir / "best_model.pt")["model"])
    model.to(device)
    trainer = Trainer(model, split, cfg.train, make_evaluator(cfg), dataset=dataset)
    strip = {"n_users"}
    valid = {k: float(v) for k, v in trainer.evaluate("valid").items() if k not in strip}
    test = {k: float(v) for k, v in trainer.evaluate("test").items() if k not in strip}
    return best_cfg, valid, test


def best_config_header(experiment_dir: Path, best: TrialRow, best_cfg: RunConfig) -> str:
    """The comment lines ``best_config.yaml`` starts with: which trial it is, how to train it
    and, when the trial trained on a GPU, that the file keeps the base config's
    ``train.device`` (trials train on the device Ray assigns them, whatever that setting says;
    a file that said ``cuda`` would fail on a machine without one)."""
    path = Path(experiment_dir) / "best_config.yaml"
    lines = [
        f"# best configuration of tune experiment {Path(experiment_dir).name}: trial "
        f"{best.trial_id}, valid {best_cfg.train.valid_metric} = {best.best_value:.6f} at "
        f"epoch {best.best_epoch}",
        f"# train it: recsys train -c {path}",
    ]
    kind = best.device.split(":", 1)[0]
    if kind and kind != best_cfg.train.device.split(":", 1)[0]:
        lines.append(
            f"# the trial trained on {best.device}; train.device below is "
            f"{best_cfg.train.device!r}, so this trains there: add --set train.device={kind} "
            "to train it as the trial did"
        )
    return "".join(f"{line}\n" for line in lines)


def _validation_curve(result: Any, metric: str) -> tuple[list[int], list[float]] | None:
    """(epochs, validation values of ``metric``) that a trial reported, or None."""
    history = result.metrics_dataframe
    key = metric_key(metric)
    if history is None or key not in history or "epoch" not in history:
        return None
    # a diverged trial's curve keeps its drop to the placeholder (where it diverged shows)
    values = pd.to_numeric(history[key], errors="coerce")
    values = values.mask(_placeholders(history, ("refused",)))
    keep = values.notna()
    return history.loc[keep, "epoch"].astype(int).tolist(), values[keep].astype(float).tolist()


def _placeholders(
    history: pd.DataFrame, flags: tuple[str, ...] = ("diverged", "refused")
) -> pd.Series:
    """Which reports of a trial carry a placeholder metric: a diverged epoch's, or that of a
    refused config (the report flags, ``diverged`` and ``refused``, to look at)."""
    out = pd.Series(False, index=history.index)
    for flag in flags:
        if flag in history:
            out |= pd.to_numeric(history[flag], errors="coerce").fillna(0) != 0
    return out


def _plot_trials(
    experiment_dir: Path,
    curves: dict[str, tuple[list[int], list[float]]],
    rows: list[TrialRow],
    best: TrialRow | None,
    metric: str,
    options: TuneOptions,
    total_epochs: int,
) -> None:
    """Write ``trials.png``: each trial's validation curve, coloured by how it ended."""
    from recsys.tuning.plot import plot_trials

    title = (
        f"{len(rows)} trials, {total_epochs} trial-epochs, scheduler {options.scheduler}"
        + (f" (grace {options.grace_period}, factor {options.reduction_factor:g})"
           if options.scheduler == "asha" else "")
    )  # fmt: skip
    png = plot_trials(
        curves,
        {row.trial_id: row.stop_reason for row in rows},
        metric,
        best_trial=best.trial_id if best is not None else None,
        title=title,
    )
    atomic_write_bytes(experiment_dir / "trials.png", png)


def _record_parent(
    tracker: Tracker,
    experiment_dir: Path,
    best: TrialRow | None,
    valid: dict[str, float],
    test: dict[str, float],
    total_epochs: int,
    n_trials: int,
    interrupted: bool,
) -> None:
    if tracker.run_id is None:
        return
    tracker.log_metrics({"total_trial_epochs": total_epochs, "n_trials": n_trials})
    tracker.log_artifact(experiment_dir / "trials.csv")
    tracker.log_artifact(experiment_dir / "trials.png")
    tracker.log_artifact(experiment_dir / "summary.json")
    if interrupted:
        tracker.end("KILLED")
        return
    if best is not None:
        tracker.log_metrics(logged_metrics("best_valid", valid))
        tracker.log_metrics(logged_metrics("test", test))
        tags = {"best_trial_id": best.trial_id}
        if best.mlflow_run_id:
            tags["best_run_id"] = best.mlflow_run_id
        log_params = getattr(tracker, "log_params", None)
        if log_params is not None:
            log_params({f"best.{k}": v for k, v in best.params.items()}, tags)
        tracker.log_dict(best_config_dict(experiment_dir), "best_config.yaml")
    tracker.end("FINISHED")


def best_config_dict(experiment_dir: Path) -> dict[str, Any]:
    """The best configuration of a finished experiment, as plain data."""
    return yaml.safe_load((Path(experiment_dir) / "best_config.yaml").read_text())


# --------------------------------------------------------------------------- terminal table


def format_trials_table(
    rows: list[TrialRow], metric: str, limit: int = 25, best: str | None = None
) -> str:
    """The trials as an aligned table, in the order given (the driver's: best first); at
    most ``limit``. ``*`` marks the trial whose id is ``best`` (the experiment's best trial,
    :attr:`TuneOutcome.best`): none when it has none (interrupted, or every trial diverged)."""
    keys = sorted({key for row in rows for key in row.params})
    short = {key: key.split(".", 1)[-1] for key in keys}
    header = ["", "trial", "status", "stop", "epochs", *[short[k] for k in keys],
              f"best {metric}", "@epoch"]  # fmt: skip
    body = []
    for row in rows[:limit]:
        cells = [
            "*" if best is not None and row.trial_id == best else "",
            row.trial_id,
            row.status.lower(),
            row.stop_reason,
            str(row.epochs),
            *[_cell(row.params.get(k)) for k in keys],
            f"{row.best_value:.4f}" if math.isfinite(row.best_value) else "",
            str(row.best_epoch) if math.isfinite(row.best_value) else "",
        ]
        body.append(cells)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *body]]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more trials in trials.csv")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
