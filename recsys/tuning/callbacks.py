"""Driver-side Ray Tune callbacks: a trial ledger and MLflow child runs.

Both run in the driver process, never in a trial, so

- one process writes the MLflow store (concurrent trials writing one sqlite file would lock
  it), and it works the same when the trials run on a remote cluster;
- what they record lives in the experiment folder, so a resumed experiment (``recsys tune
  --resume``) continues the same records: Ray pickles the callbacks with the experiment and
  unpickles them on restore; live MLflow clients are dropped from the pickle and re-opened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from recsys.errors import TrackingError
from recsys.jsonio import dumps_json
from recsys.tracking import MlflowTracker, flatten_params
from recsys.train.checkpoint import atomic_write_text

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

__all__ = ["LOGGED_PREFIXES", "MlflowTrialCallback", "TrialLedger"]

log = logging.getLogger(__name__)

LOGGED_PREFIXES = ("valid/", "train/", "best_valid/")
"""Reported metrics a child run records per epoch (plus :data:`LOGGED_EXTRAS`)."""
LOGGED_EXTRAS = ("epoch_seconds", "restores", "diverged", "early_stop", "best_epoch")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        log.warning("cannot read %s; starting it afresh", path)
        return {}


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj, indent=2, sort_keys=True) + "\n")


class TrialLedger(Callback):
    """Records each trial's Ray status and failure count in a JSON file, as they change.

    The file maps trial id -> ``{"status": ..., "failures": ...}``. At the end of the
    experiment it holds every trial's status as of the last step of the tuning loop: when
    the experiment is interrupted (Ctrl-C), Ray marks the unfinished trials TERMINATED while
    it cleans up, but they are still RUNNING or PENDING here, which is how the driver tells
    an interrupted experiment from a finished one.
    """

    def __init__(self, path: Path) -> None:
        """Keep the ledger at ``path`` (read back on resume)."""
        self.path = Path(path)
        self._last_step: dict[str, dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the in-memory snapshot (Ray saves callbacks with the experiment)."""
        return {"path": self.path, "_last_step": {}}

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        """Remember every trial's status after each step of the tuning loop."""
        self._last_step = {
            trial.trial_id: {
                "status": str(trial.status),
                "failures": int(getattr(trial, "num_failures", 0)),
            }
            for trial in trials
        }

    def _update(self, trials: list[Trial]) -> None:
        state = _read_json(self.path)
        for trial in trials:
            state[trial.trial_id] = {
                "status": str(trial.status),
                "failures": int(getattr(trial, "num_failures", 0)),
            }
        _write_json(self.path, state)

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Record a started trial."""
        self._update([trial])

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Record a finished (or scheduler-stopped) trial."""
        state = _read_json(self.path)
        state[trial.trial_id] = {
            "status": "TERMINATED",
            "failures": int(getattr(trial, "num_failures", 0)),
        }
        _write_json(self.path, state)

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Record a failure that will be retried."""
        self._update([trial])

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Record a trial that failed for good."""
        state = _read_json(self.path)
        state[trial.trial_id] = {
            "status": "ERROR",
            "failures": int(getattr(trial, "num_failures", 0)),
        }
        _write_json(self.path, state)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """Record every trial's status as the tuning loop left it (before Ray's clean-up)."""
        state = _read_json(self.path)
        for trial in trials:
            state[trial.trial_id] = self._last_step.get(
                trial.trial_id,
                {"status": str(trial.status), "failures": int(getattr(trial, "num_failures", 0))},
            )
        _write_json(self.path, state)


class MlflowTrialCallback(Callback):
    """One MLflow child run per trial, under the experiment's parent run.

    A child run holds the trial's full resolved config as params, the reported metrics of
    every epoch (``valid/*``, ``train/*``, ``best_valid/*``, ``epoch_seconds``, ...) with the
    epoch's 0-based index as the step (as ``recsys train`` logs), and ends FINISHED, FAILED
    (trial error) or KILLED (experiment interrupted; a resume re-opens it). The trial id ->
    run id map is kept in ``runs_file``. MLflow errors are logged as warnings and never stop
    the search.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        parent_run_id: str,
        base: dict[str, Any],
        runs_file: Path,
    ) -> None:
        """Log children of ``parent_run_id``; ``base`` is the trials' base run config."""
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.base = base
        self.runs_file = Path(runs_file)
        self._children: dict[str, MlflowTracker] = {}
        self._broken: set[str] = set()
        # per trial, the last epoch index its child run holds: a trial restored from a
        # checkpoint older than its last report trains and reports that epoch again (Ray
        # delivers results at least once), and MLflow would keep both points
        self._logged: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without live MLflow clients (Ray saves callbacks with the experiment)."""
        state = self.__dict__.copy()
        state["_children"] = {}
        state["_broken"] = set()
        state["_logged"] = {}  # read back from MLflow when a child run is reopened
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_logged": {}, **state})  # experiments saved before _logged

    # -- helpers

    def run_ids(self) -> dict[str, str]:
        """Trial id -> MLflow run id, as recorded so far."""
        return {str(k): str(v) for k, v in _read_json(self.runs_file).items()}

    def _child(self, trial: Trial) -> MlflowTracker | None:
        trial_id = trial.trial_id
        if trial_id in self._broken:
            return None
        if trial_id in self._children:
            return self._children[trial_id]
        try:
            tracker = MlflowTracker(
                self.tracking_uri, self.experiment, parent_run_id=self.parent_run_id
            )
            known = self.run_ids()
            if trial_id in known:
                tracker.reopen(known[trial_id])
                last = tracker.last_step("epoch_seconds")
                if last is not None:
                    self._logged[trial_id] = last
            else:
                tracker.start(trial_id, self._params(trial), tags=self._tags(trial))
                known[trial_id] = str(tracker.run_id)
                _write_json(self.runs_file, known)
        except TrackingError as exc:
            log.warning("MLflow: no child run for trial %s: %s", trial_id, exc)
            self._broken.add(trial_id)
            return None
        self._children[trial_id] = tracker
        return tracker

    def _params(self, trial: Trial) -> dict[str, Any]:
        from recsys.tuning.trainable import trial_run_config

        try:
            cfg = trial_run_config(self.base, dict(trial.config))
            return flatten_params(cfg.model_dump(mode="json"))
        except Exception as exc:  # a config the trial itself will reject; record what we have
            log.warning("trial %s: cannot resolve its config (%s)", trial.trial_id, exc)
            return flatten_params(dict(trial.config))

    @staticmethod
    def _tags(trial: Trial) -> dict[str, str]:
        return {"trial_id": trial.trial_id, "tuned_keys": ",".join(sorted(trial.config))}

    def _end(self, trial: Trial, status: str) -> None:
        tracker = self._children.pop(trial.trial_id, None)
        if tracker is None:
            return
        try:
            tracker.end(status)
        except TrackingError as exc:
            log.warning("MLflow: cannot end the run of trial %s: %s", trial.trial_id, exc)

    # -- Ray Tune callback hooks

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Open (or re-open) the trial's child run."""
        self._child(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        """Log the epoch's reported metrics at the epoch's 0-based index as the step (the
        report's ``epoch`` counts epochs trained), as ``recsys train`` logs its runs."""
        tracker = self._child(trial)
        if tracker is None or result.get("refused"):
            return  # a refused config trained nothing; its report's metric is a placeholder
        metrics = {
            key: float(value)
            for key, value in result.items()
            if (key.startswith(LOGGED_PREFIXES) or key in LOGGED_EXTRAS)
            and isinstance(value, int | float)
            and math.isfinite(float(value))
        }
        step = max(int(result.get("epoch", 0)) - 1, 0)
        if step <= self._logged.get(trial.trial_id, -1) and not result.get("diverged"):
            return  # this epoch is in the child run already (a restored trial re-reports it)
        try:
            tracker.log_metrics(metrics, step=step)
            self._logged[trial.trial_id] = step
        except TrackingError as exc:
            log.warning("MLflow: metrics of trial %s not logged: %s", trial.trial_id, exc)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """End the child run FINISHED (also for trials the scheduler stopped), or FAILED for a
        trial whose config was refused (it ends without an error, so Ray does not retry it)."""
        tracker = self._child(trial)
        last = trial.last_result or {}
        if last.get("refused"):
            if tracker is not None:
                with contextlib.suppress(TrackingError):
                    tracker.log_params({}, {"recsys.refusal": str(last.get("refusal", ""))})
            self._end(trial, "FAILED")
            return
        if tracker is not None and "epoch" in last:
            try:
                epochs = int(last["epoch"])
                tracker.log_metrics({"epochs_run": float(epochs)}, step=max(epochs - 1, 0))
            except TrackingError as exc:
                log.warning("MLflow: summary of trial %s not logged: %s", trial.trial_id, exc)
        self._end(trial, "FINISHED")

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """End the child run FAILED."""
        self._end(trial, "FAILED")

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """End runs still open (an interrupted experiment) as KILLED."""
        for trial in trials:
            if trial.trial_id in self._children:
                self._end(trial, "KILLED")
