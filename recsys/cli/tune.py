"""``recsys tune``: a Ray Tune search over a space file, locally or on a Ray cluster."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from recsys._paths import resource_dir
from recsys.cli.options import (
    config_option,
    data_section,
    dataset_options,
    output_dir_option,
    quiet_option,
    run_overrides,
    set_option,
    tracking_options,
)

if TYPE_CHECKING:
    from recsys.tuning.driver import TuneOutcome

SPACES_DIR = resource_dir("spaces")
"""The shipped search spaces: the repository's ``tune/spaces/`` (or the copy in an installed
wheel); ``--space`` defaults to ``<model>.yaml`` there."""

_SEARCH_FLAGS = {
    "num_samples": "--num-samples",
    "cpus_per_trial": "--cpus-per-trial",
    "gpus_per_trial": "--gpus-per-trial",
    "max_concurrent": "--max-concurrent",
    "scheduler": "--scheduler",
    "grace_period": "--grace-period",
    "reduction_factor": "--reduction-factor",
    "brackets": "--brackets",
    "search_alg": "--search-alg",
    "seed": "--seed",
    "max_failures": "--max-failures",
}
"""Search options (parameter -> flag) that --resume takes from the experiment folder."""

log = logging.getLogger("recsys")


@click.command()
@config_option("YAML base run config every trial starts from.")
@click.option("-m", "--model", help="Model name; see `recsys models`.")
@dataset_options
@click.option(
    "--space",
    "space_path",
    type=click.Path(path_type=Path),
    help="Search-space YAML (default: tune/spaces/<model>.yaml for a built-in model, "
    "spaces/<model>.yaml in a plugin model's package).",
)
@click.option(
    "-n",
    "--num-samples",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Trials to sample (times the grid size when the space has grid axes).",
)
@set_option(
    "Override a base-config key, e.g. --set train.epochs=50 (repeatable; beats the "
    "space: a key set here is neither fixed nor sampled)."
)
@output_dir_option("Where the experiment folder goes (default: runs).")
@click.option("--name", help="Experiment folder name (default: tune-<model>-<dataset>-<time>).")
@click.option(
    "--address",
    help="Ray cluster to run on: HOST:PORT of its head, or 'auto' (RAY_ADDRESS or the "
    "cluster `ray start` made on this machine). Default: start Ray locally.",
)
@click.option(
    "--cpus-per-trial",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="CPUs per trial (also torch's thread count).",
)
@click.option(
    "--gpus-per-trial",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="GPUs per trial; fractions share a GPU (0.5 = two trials per GPU).",
)
@click.option(
    "--max-concurrent",
    type=click.IntRange(min=1),
    help="At most this many trials at once (default: as many as the resources allow).",
)
@click.option(
    "--scheduler",
    type=click.Choice(["asha", "median", "none"]),
    default="asha",
    show_default=True,
    help="Early stopping of weak trials: ASHA, the median stopping rule, or none.",
)
@click.option(
    "--grace-period",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Epochs before a trial may be stopped by the scheduler.",
)
@click.option(
    "--reduction-factor",
    type=click.FloatRange(min=1, min_open=True),
    default=3.0,
    show_default=True,
    help="ASHA keeps the top 1/reduction-factor trials at each rung.",
)
@click.option(
    "--brackets",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="ASHA brackets; bracket s starts stopping at grace-period x reduction-factor^s.",
)
@click.option(
    "--search-alg",
    type=click.Choice(["random", "optuna"]),
    default="random",
    show_default=True,
    help="Random/grid sampling, or Optuna TPE (pip install -e '.[tune]').",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the search.",
)
@click.option(
    "--max-failures",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Restarts from the last checkpoint allowed per crashed trial.",
)
@tracking_options()
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Resume the interrupted experiment in this folder, as it was set up (an option "
    "that would change it is refused; a finished one has nothing to resume).",
)
@quiet_option("No Ray status tables or trial logs.")
def tune(
    config_path: Path | None,
    model: str | None,
    dataset: str | None,
    data_path: Path | None,
    space_path: Path | None,
    num_samples: int,
    overrides: tuple[str, ...],
    output_dir: Path | None,
    name: str | None,
    address: str | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
    max_concurrent: int | None,
    scheduler: str,
    grace_period: int,
    reduction_factor: float,
    brackets: int,
    search_alg: str,
    seed: int,
    max_failures: int,
    tracking_uri: str | None,
    no_tracking: bool,
    resume_dir: Path | None,
    quiet: bool,
) -> None:
    """Search hyper-parameters with Ray Tune; test the best configuration once.

    Every trial trains with the same trainer as `recsys train` and reports validation metrics
    each epoch (ASHA stops weak trials early), checkpointing as it goes. Prints a results
    table and the experiment folder, which holds trials.csv, summary.json and
    best_config.yaml (for `recsys train -c`).
    """
    from recsys.tuning.driver import finished_experiment, resume_tune

    # options the user typed, as opposed to defaults (the search options all have defaults)
    ctx = click.get_current_context()
    typed = {
        param.name
        for param in ctx.command.params
        if param.name is not None
        and ctx.get_parameter_source(param.name) is not click.core.ParameterSource.DEFAULT
    }
    if resume_dir is not None:
        setup = [
            ("--config", config_path),
            ("--model", model),
            ("--dataset", dataset),
            ("--data-path", data_path),
            ("--space", space_path),
            ("--output-dir", output_dir),
            ("--name", name),
        ]
        given = [flag for flag, value in setup if value]
        # the search is restored as it was saved: an option that would change it is refused
        # (it would be silently ignored); one that repeats the experiment's own is accepted
        given += _changed_settings(resume_dir, ctx.params, typed)
        if given:
            raise click.UsageError(
                f"--resume continues the experiment as it was set up; drop {', '.join(given)}"
            )
        done = finished_experiment(resume_dir)
        if done is not None:
            click.echo(done, err=True)
            return
        outcome = resume_tune(resume_dir, address=address, verbose=0 if quiet else None)
        _report(outcome)
        return

    from recsys.config import build_run_config, parse_override
    from recsys.tuning.driver import check_tunable, run_tune
    from recsys.tuning.space import load_space

    extra = run_overrides(overrides, tracking_uri=tracking_uri, no_tracking=no_tracking)
    cfg = build_run_config(
        config_path,
        extra,
        model={"name": model} if model else None,
        data=data_section(dataset, data_path),
        output_dir=str(output_dir) if output_dir else None,
    )
    check_tunable(cfg)
    if space_path is None:
        space_path = default_space(cfg.model["name"])
    space = load_space(space_path)
    # --set beats the space: its fixed values and its distributions alike
    set_keys = {".".join(parse_override(text)[0]) for text in extra}
    space, pinned = space.without(set_keys)
    if pinned:
        log.info("not sampled, set with --set: %s", ", ".join(pinned))
    _warn_space_overrides(config_path, cfg.model["name"], space)
    values = dict(
        num_samples=num_samples,
        scheduler=scheduler,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        brackets=brackets,
        search_alg=search_alg,
        seed=seed,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        max_concurrent=max_concurrent,
        max_failures=max_failures,
    )
    # only the typed options are set, so TuneOptions knows defaults from requests (run_tune
    # refuses a requested scheduler option that would do nothing, and warns on a default)
    options = _tune_options(
        {k: v for k, v in values.items() if k in typed} | {"verbose": 0 if quiet else 1}
    )
    outcome = run_tune(cfg, space, options, address=address, name=name)
    _report(outcome)


def plugin_space(model: str) -> Path:
    """Where a plugin ships the default space of ``model``: ``spaces/<model>.yaml`` in the
    package holding the module of the model's class (``recsys_vae/spaces/multvae.yaml`` for
    ``recsys_vae.vae.MultVAE``). The file need not exist.

    Where :mod:`importlib.resources` cannot place the package, this is the folder of the
    module's file: an implicit namespace package (no ``__init__.py``) under an editable install
    has a path entry that is not a folder, on which ``resources.files`` raises
    ``NotADirectoryError`` ("MultiplexedPath only supports directories").
    """
    from importlib import import_module, resources

    from recsys.models.registry import get_model_class

    module = import_module(get_model_class(model).__module__)
    # a module's package is its parent; a package (a class in __init__.py) is its own
    package = module.__name__ if hasattr(module, "__path__") else module.__package__
    if not package:  # a top-level module: the folder it is in
        return Path(str(module.__file__)).parent / "spaces" / f"{model}.yaml"
    try:
        return Path(str(resources.files(package) / "spaces" / f"{model}.yaml"))
    except (OSError, TypeError):
        if not getattr(module, "__file__", None):
            raise
        # the module's file is in its package's folder (a package's is its __init__.py)
        return Path(module.__file__).parent / "spaces" / f"{model}.yaml"


def default_space(model: str) -> Path:
    """The space ``recsys tune`` uses without ``--space``: ``tune/spaces/<model>.yaml`` (the
    built-in spaces) if there is one, else the plugin's :func:`plugin_space`.

    Raises:
        click.UsageError: neither file exists; the message names both.
    """
    builtin = SPACES_DIR / f"{model}.yaml"
    if builtin.is_file():
        log.info("search space: %s (the default for %s)", builtin, model)
        return builtin
    shipped = plugin_space(model)
    if shipped.is_file():
        log.info("search space: %s (shipped with the model %s)", shipped, model)
        return shipped
    raise click.UsageError(
        f"no --space given and no default space for model {model!r}: neither {builtin} "
        f"(built-in spaces) nor {shipped} (spaces shipped in the model's package) exists; "
        "give one with --space"
    )


def _tune_options(values: dict[str, Any]) -> Any:
    """:class:`~recsys.tuning.driver.TuneOptions` from ``values``; a problem is a ConfigError
    that names the flag (``--brackets``), not the option's field."""
    from pydantic import ValidationError

    from recsys.errors import ConfigError
    from recsys.tuning.driver import TuneOptions

    try:
        return TuneOptions.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            message = err["msg"].removeprefix("Value error, ")
            flag = _SEARCH_FLAGS.get(field)
            problems.append(f"{flag}: {message}" if flag else message)
        raise ConfigError("; ".join(problems)) from None


def _warn_space_overrides(config_path: Path | None, model: str, space: Any) -> None:
    """Warn when the space fixes or samples a key that the ``-c`` file sets: the space's
    value is used (only ``--set`` beats the space), which is easy to miss."""
    from recsys.config import load_config_dict

    if config_path is None:
        return
    values = load_config_dict(config_path)
    file_model = (values.get("model") or {}).get("name")

    def in_file(key: str) -> bool:
        if key.startswith("model.") and file_model not in (None, model):
            return False  # another model's section: build_run_config dropped it
        node: Any = values
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    fixed = [key for key in space.fixed if in_file(key)]
    sampled = [key for key in space.params if in_file(key)]
    if not fixed and not sampled:
        return
    what = [f"fixes {', '.join(fixed)}"] if fixed else []
    what += [f"samples {', '.join(sampled)}"] if sampled else []
    log.warning(
        "%s sets values that the space %s %s: the space's are used (--set KEY=VALUE beats "
        "the space)",
        config_path,
        space.source,
        " and ".join(what),
    )


def _changed_settings(experiment_dir: Path, params: dict[str, Any], typed: set[str]) -> list[str]:
    """The flags among ``--set``, ``--tracking-uri``, ``--no-tracking`` and the search options
    that would change the experiment in ``experiment_dir`` (each with what it has instead);
    all of those given when its tune.json or base_config.yaml cannot be read."""
    from recsys.config import parse_override
    from recsys.experiment import override_changes
    from recsys.tuning.driver import saved_setup

    config_flags = [
        flag
        for flag, param in (
            ("--set", "overrides"),
            ("--tracking-uri", "tracking_uri"),
            ("--no-tracking", "no_tracking"),
        )
        if params.get(param)
    ]
    search = {param: flag for param, flag in _SEARCH_FLAGS.items() if param in typed}
    saved = saved_setup(experiment_dir)
    if saved is None:
        return config_flags + list(search.values())
    state, base = saved
    changed = []
    extra = run_overrides(
        params.get("overrides") or (),
        tracking_uri=params.get("tracking_uri"),
        no_tracking=bool(params.get("no_tracking")),
    )
    changes = override_changes(base, extra)
    # a key the space samples is not pinned by repeating the value base_config.yaml has
    tuned = set(state.get("tuned_keys") or ())
    changes += [
        f"the space samples {key}"
        for key in dict.fromkeys(".".join(parse_override(text)[0]) for text in extra)
        if key in tuned
    ]
    if changes:
        changed.append(f"{'/'.join(config_flags)} ({'; '.join(changes)})")
    for param, flag in search.items():
        if params[param] != state["options"].get(param):
            changed.append(f"{flag} (the experiment has {state['options'].get(param)})")
    return changed


def _report(outcome: TuneOutcome) -> None:
    from recsys.cli.table import metrics_table
    from recsys.errors import ConfigError, TrainingDivergedError
    from recsys.tuning.driver import format_trials_table

    best_id = outcome.best.trial_id if outcome.best is not None else None
    click.echo(format_trials_table(outcome.trials, outcome.metric, best=best_id))
    click.echo(
        f"{len(outcome.trials)} trials, {outcome.total_epochs} trial-epochs, "
        f"{outcome.seconds:.0f} s; Ray at {outcome.ray.get('address', '?')}"
    )
    folder = outcome.experiment_dir
    refused = [t for t in outcome.trials if t.stop_reason == "refused"]
    if refused:
        # a trial refuses its config before training (not retried): say why, once
        click.echo(
            f"{len(refused)} of {len(outcome.trials)} trials refused their configuration, "
            f"e.g. trial {refused[0].trial_id}: {refused[0].error} (see "
            f"{folder / 'trials.csv'})",
            err=True,
        )
    if outcome.interrupted:
        click.echo(f"experiment folder: {folder}")
        click.echo(f"interrupted; resume with: recsys tune --resume {folder}", err=True)
        raise click.exceptions.Exit(130)
    if outcome.best is None:
        click.echo(f"experiment folder: {folder}")
        if outcome.trials and len(refused) == len(outcome.trials):
            raise ConfigError(
                f"every trial refused its configuration, so there is no result; e.g. trial "
                f"{refused[0].trial_id}: {refused[0].error}"
            )
        if outcome.trials and all(t.stop_reason == "diverged" for t in outcome.trials):
            raise TrainingDivergedError(
                "every trial diverged (its loss became infinite or NaN), so no configuration "
                "is a result; lower train.learning_rate in the space (see "
                f"{folder / 'trials.csv'})"
            )
        raise click.ClickException("no trial reported a validation metric; see trials.csv")
    best = outcome.best
    topk = outcome.best_config.eval.topk if outcome.best_config else [10]
    click.echo(f"\nbest trial {best.trial_id} (epoch {best.best_epoch}), tested once:")
    click.echo(
        metrics_table(
            [("valid", best.best_epoch, None, outcome.valid), ("test", "", None, outcome.test)],
            topk,
            first="part",
        )
    )
    click.echo(f"best config: {folder / 'best_config.yaml'}  (recsys train -c <it>)")
    click.echo(f"experiment folder: {folder}")
