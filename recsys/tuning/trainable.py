"""The Ray Tune trainable: one trial is one :class:`~recsys.train.trainer.Trainer` run.

:func:`train_trial` is a function trainable (Ray Tune's current API: ``tune.get_checkpoint``
at start, ``tune.report(metrics, checkpoint=...)`` per epoch). It builds the trial's run
config from the base config plus the sampled keys, trains with the same Trainer as
``recsys train``, and after every validation epoch reports

- ``valid/<metric>`` for every validation metric (``valid/ndcg_at_10``, ...),
- ``train/<term>`` for the epoch's mean loss terms,
- ``epoch`` (epochs trained so far: Ray's time attribute, which ASHA's grace period and
  rungs count), ``best_epoch`` (the 0-based index of the best epoch, as ``recsys train``
  numbers epochs), ``best_valid/<valid_metric>``, ``epoch_seconds``,
  ``early_stop`` (1 when the trainer's own patience ends the trial), ``restores`` (how often
  this trial was restored from a checkpoint), ``diverged`` (1 when the loss became NaN),
  ``device`` (the torch device the trial trained on: ``cuda:0`` when Ray gave it a GPU),

together with a checkpoint holding the trainer's ``last.pt`` (full state) and ``best.pt``
(best weights). Test metrics are never computed here: the driver tests the best
configuration once, after the search.

A restarted trial (after a crash, or when an interrupted experiment is resumed) copies its
last reported checkpoint into a fresh local folder and continues with ``fit(resume=True)``,
which repeats exactly what an uninterrupted run would have done.

Two outcomes end a trial without an exception, so Ray does not retry it (a retry would fail
the same way): a loss that becomes NaN (the report has ``diverged: 1``) and a
:class:`~recsys.errors.ConfigError` from the trial's own config, such as a model's refusal of
its training settings (``refused: 1``, with the message in ``refusal``). ``recsys tune``
checks the configurations the space stands for before Ray starts
(:meth:`~recsys.tuning.space.SearchSpace.check_configurations`), so a trial is refused only
for a value that check did not draw.

The data arrive through Ray's object store (``tune.with_parameters``), loaded once by the
driver. The device comes from what Ray assigned to the trial (:func:`select_device`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.config import RunConfig, validate
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.errors import ConfigError
from recsys.train.trainer import EpochReport
from recsys.tuning.space import set_dotted

__all__ = [
    "CHECKPOINT_FILES",
    "InjectedFault",
    "InjectedFaultError",
    "best_metric_key",
    "metric_key",
    "plain_value",
    "select_device",
    "train_trial",
    "trial_run_config",
]

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("last.pt", "best.pt")
"""Trainer files a trial checkpoint carries."""
_STATE_FILE = "trial_state.json"


def metric_key(valid_metric: str) -> str:
    """The name under which a trial reports a validation metric: ``valid/ndcg_at_10``."""
    return f"valid/{valid_metric}"


def best_metric_key(valid_metric: str) -> str:
    """The name of the best-so-far value of the selection metric: ``best_valid/ndcg_at_10``."""
    return f"best_valid/{valid_metric}"


def plain_value(value: Any) -> Any:
    """A sampled value as a plain Python value (Ray's samplers may return numpy scalars)."""
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str | bytes):
        return item()
    return value


def trial_run_config(
    base: dict[str, Any], params: dict[str, Any], **train_settings: Any
) -> RunConfig:
    """The run config of a trial: ``base`` with the sampled dotted ``params`` set.

    ``train_settings`` (``device=``, ``num_threads=``, ``progress=``) override the ``train``
    section; None values are left alone.
    """
    values = copy.deepcopy(base)
    for key, value in params.items():
        set_dotted(values, key, plain_value(value))
    for key, value in train_settings.items():
        if value is not None:
            set_dotted(values, f"train.{key}", value)
    return validate(RunConfig, values)


def select_device(
    gpu_ids: Sequence[int | str], cuda_available: bool, visible_devices: str | None = None
) -> str:
    """The torch device of a trial, from the GPUs Ray assigned to it.

    Args:
        gpu_ids: the GPU ids Ray gave the trial (``ray.get_runtime_context()
            .get_accelerator_ids()["GPU"]``); empty when the trial has no GPU.
        cuda_available: ``torch.cuda.is_available()`` in the trial's process.
        visible_devices: ``$CUDA_VISIBLE_DEVICES`` in the trial's process. Ray sets it to the
            assigned ids, so the first assigned GPU is ``cuda:<its position in that list>``;
            without it (``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES``) the id is the index.

    Returns:
        ``"cpu"`` when Ray gave no GPU (even if the machine has one: another trial may own
        it), else ``"cuda:<index>"``.

    Raises:
        ConfigError: Ray assigned a GPU but this torch build sees no CUDA device.
    """
    if not gpu_ids:
        return "cpu"
    if not cuda_available:
        raise ConfigError(
            f"Ray assigned GPU(s) {list(gpu_ids)} to this trial but torch sees no CUDA device "
            "on that node; install a CUDA build of torch there or use --gpus-per-trial 0"
        )
    first = str(gpu_ids[0]).strip()
    visible = [v.strip() for v in (visible_devices or "").split(",") if v.strip()]
    if visible:
        return f"cuda:{visible.index(first) if first in visible else 0}"
    return f"cuda:{int(first)}" if first.isdigit() else "cuda:0"


def _ray_device() -> str:
    """:func:`select_device` for the current Ray worker."""
    import ray
    import torch

    try:
        gpu_ids = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
    except Exception:  # older Ray: the GPU-only helper
        gpu_ids = ray.get_gpu_ids()
    return select_device(gpu_ids, torch.cuda.is_available(), os.environ.get("CUDA_VISIBLE_DEVICES"))


class InjectedFaultError(RuntimeError):
    """Raised by :class:`InjectedFault`; a deliberate crash, not a bug."""


@dataclass(frozen=True)
class InjectedFault:
    """Make exactly one trial of an experiment crash once, at a given epoch.

    For fault-tolerance drills and tests: the first trial to finish epoch ``epoch``
    (1-based) raises :class:`InjectedFaultError` before reporting it; every other trial, and
    the same trial after its restart, runs normally. "Once" is decided by creating a marker
    file in ``marker_dir`` exclusively, so the folder must be shared by the trials (it is on
    one machine).
    """

    epoch: int
    marker_dir: str

    def __call__(self, epoch: int, trial_id: str) -> None:
        """Raise if this is the first trial to reach ``self.epoch``."""
        if epoch != self.epoch:
            return
        marker = Path(self.marker_dir) / "injected-fault"
        marker.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{trial_id} {epoch}\n")
        raise InjectedFaultError(f"injected fault in trial {trial_id} at epoch {epoch}")


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (the trainer replaces files, never edits them)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _restore(checkpoint: Any, folder: Path) -> dict[str, Any]:
    """Copy a Ray checkpoint's trainer files into ``folder``; return its trial state."""
    folder.mkdir(parents=True, exist_ok=True)
    with checkpoint.as_directory() as source:
        source = Path(source)
        for name in CHECKPOINT_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, folder / name)
        state_path = source / _STATE_FILE
        return json.loads(state_path.read_text()) if state_path.is_file() else {}


def _refuse(
    trial_id: str, metric: str, exc: ConfigError, *, epoch: int, restores: int, device: str
) -> None:
    """End a trial whose config is refused: one report, ``refused: 1`` and the message.
    (Ray needs the selection metric in every report; its 0.0 is a placeholder that the
    driver ignores, as it does a diverged trial's.)"""
    from ray import tune

    log.warning("trial %s refused its configuration: %s", trial_id, exc)
    tune.report(
        {
            "epoch": epoch,
            metric_key(metric): 0.0,
            "early_stop": 0,
            "restores": restores,
            "diverged": 0,
            "refused": 1,
            "refusal": str(exc)[:1000],
            "device": device,
        }
    )


def train_trial(
    config: dict[str, Any],
    *,
    base: dict[str, Any],
    split: Split,
    dataset: Dataset | None,
    cpus_per_trial: float = 1.0,
    fault: InjectedFault | None = None,
) -> None:
    """Train one trial and report validation metrics to Ray Tune after every validation.

    Args:
        config: the sampled values, by dotted key (Ray's ``param_space`` sample).
        base: the base run config (a dict of the resolved :class:`RunConfig`).
        split: the data split, shared by every trial through the object store.
        dataset: the dataset (for models that read features).
        cpus_per_trial: the trial's CPU share; sets torch's thread count unless the base
            config sets ``train.num_threads``.
        fault: an optional :class:`InjectedFault` (fault-tolerance drills).
    """
    import torch
    from ray import tune

    from recsys.experiment import make_evaluator
    from recsys.models.registry import create_model
    from recsys.train.trainer import Trainer

    threads = base.get("train", {}).get("num_threads") or max(1, int(cpus_per_trial))
    device = _ray_device()
    trial_id = tune.get_context().get_trial_id() or "trial"
    metric = str(base.get("train", {}).get("valid_metric"))
    try:
        cfg = trial_run_config(base, config, device=device, num_threads=threads, progress=False)
    except ConfigError as exc:
        _refuse(trial_id, metric, exc, epoch=0, restores=0, device=device)
        return
    torch.set_num_threads(threads)
    patience, every = cfg.train.patience, cfg.train.eval_every

    work = Path(tempfile.mkdtemp(prefix="recsys-trial-"))
    folder = work / "checkpoints"
    folder.mkdir()
    checkpoint = tune.get_checkpoint()
    restores, last_epoch = 0, 0
    if checkpoint is not None:
        state = _restore(checkpoint, folder)
        restores = int(state.get("restores", 0)) + 1
        last_epoch = int(state.get("epoch", 0))
        log.info("trial %s restored from its epoch-%d checkpoint", trial_id, last_epoch)

    def report(epoch_report: EpochReport) -> None:
        nonlocal last_epoch
        epoch = epoch_report.epoch + 1
        last_epoch = epoch
        if epoch_report.valid is None:
            return
        if fault is not None:
            fault(epoch, trial_id)
        early_stop = (epoch_report.epoch - epoch_report.best_epoch) // every >= patience
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "best_epoch": epoch_report.best_epoch,
            best_metric_key(metric): float(epoch_report.best_value),
            "epoch_seconds": epoch_report.seconds,
            "early_stop": int(early_stop),
            "restores": restores,
            "diverged": 0,
            "device": cfg.train.device,
        }
        metrics.update(
            {
                metric_key(k): float(v)
                for k, v in epoch_report.valid.items()
                if not k.startswith("n_users")
            }
        )
        metrics.update({f"train/{k}": float(v) for k, v in epoch_report.train.items()})
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            for name in CHECKPOINT_FILES:
                if (folder / name).is_file():
                    _link_or_copy(folder / name, Path(tmp) / name)
            (Path(tmp) / _STATE_FILE).write_text(
                json.dumps({"epoch": epoch, "restores": restores, "trial_id": trial_id})
            )
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    try:
        model = create_model(cfg.model["name"], **cfg.model_params())
        trainer = Trainer(
            model,
            split,
            cfg.train,
            make_evaluator(cfg),
            checkpoint_dir=folder,
            callbacks=[report],
            dataset=dataset,
        )
        trainer.fit(resume=checkpoint is not None)
    except ConfigError as exc:
        # the trial's config is refused (a model's check of its training settings): the same
        # on every retry, so the trial ends here, with the message for the driver to show
        _refuse(trial_id, metric, exc, epoch=last_epoch, restores=restores, device=device)
    except FloatingPointError as exc:
        # a diverging configuration: retrying from the checkpoint would diverge again, so the
        # trial ends here with the worst possible value for the epoch it diverged in
        log.warning("trial %s diverged: %s", trial_id, exc)
        tune.report(
            {
                "epoch": last_epoch + 1,
                metric_key(metric): 0.0,
                "early_stop": 0,
                "restores": restores,
                "diverged": 1,
                "device": cfg.train.device,
            }
        )
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
