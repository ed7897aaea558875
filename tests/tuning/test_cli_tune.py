"""`recsys tune` mistakes caught before Ray starts: clear messages, exit status 2."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from recsys.cli import main
from tests.tuning.conftest import DATA

SPACES = Path(__file__).resolve().parents[2] / "tune" / "spaces"


@pytest.fixture
def run(tmp_path, capsys):
    def invoke(*args: str) -> tuple[int, str]:
        code = main(["tune", "--dataset", DATA, "-o", str(tmp_path / "runs"), *args])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return invoke


def test_help_lists_the_options(capsys):
    assert main(["tune", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--space", "--num-samples", "--address", "--cpus-per-trial",
                   "--gpus-per-trial", "--scheduler", "--max-failures", "--resume",
                   "--search-alg", "--set", "--no-tracking"):  # fmt: skip
        assert option in out


def test_pop_has_nothing_to_tune(run):
    code, out = run("--model", "pop")
    assert code == 2
    assert "model 'pop' has no hyper-parameters to tune" in out


def test_a_bad_space_names_the_file_and_key(run, tmp_path):
    space = tmp_path / "bad.yaml"
    space.write_text("params:\n  model.embedding_size: {type: pow2, low: 16, high: 100}\n")
    code, out = run("--model", "bpr", "--space", str(space))
    assert code == 2
    assert f"{space}: key model.embedding_size: high must be a power of two (got 100)" in out


def test_a_missing_space_file(run, tmp_path):
    code, out = run("--model", "bpr", "--space", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml does not exist" in out


def test_optuna_refuses_grid_axes(run, tmp_path):
    space = tmp_path / "grid.yaml"
    space.write_text("params:\n  train.learning_rate: {type: grid, values: [0.1, 0.01]}\n")
    code, out = run("--model", "bpr", "--space", str(space), "--search-alg", "optuna")
    assert code == 2 and "train.learning_rate are grid axes" in out


def test_resume_takes_no_setup_options(run, tmp_path):
    code, out = run("--resume", str(tmp_path))
    assert code == 2
    assert "--resume continues the experiment as it was set up; drop --dataset, --output-dir" in out


def test_resume_needs_an_experiment_folder(tmp_path, capsys):
    assert main(["tune", "--resume", str(tmp_path)]) == 2
    assert "is not a tune experiment folder" in capsys.readouterr().err


def test_bad_scheduler_is_a_usage_error(run):
    code, out = run("--model", "bpr", "--scheduler", "hyperband")
    assert code == 2 and "hyperband" in out


def test_brackets_need_asha(run):
    code, out = run("--model", "bpr", "--scheduler", "median", "--brackets", "2")
    # the message names the flags (it said "(config): brackets=2 needs scheduler 'asha'")
    assert (
        code == 2 and "error: --brackets 2 applies to --scheduler asha only (got 'median')" in out
    )


def test_a_negative_seed_names_the_flag(run, tmp_path):
    code, out = run("--model", "bpr", "--seed", "-1")
    assert code == 2 and "Invalid value for '--seed': -1 is not in the range x>=0" in out
    assert not (tmp_path / "runs").exists()


def test_a_q_that_ray_would_refuse_fails_before_any_work(run, tmp_path):
    # Ray's quniform needs low and high to be multiples of q; it used to fail inside Ray
    # with a traceback (exit 3), after the experiment folder was written
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  model.reg_weight: {type: uniform, low: 0.1, high: 0.5, q: 0.2}\n")
    code, out = run("--model", "bpr", "--space", str(space), "--no-tracking")
    assert code == 2
    assert f"{space}: key model.reg_weight: low and high must be multiples of q" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("model", ["itemknn", "ease"])
def test_scheduler_options_for_a_model_that_trains_in_one_step(run, tmp_path, model):
    code, out = run("--model", model, "--grace-period", "3", "--reduction-factor", "4",
                    "--brackets", "3", "--no-tracking")  # fmt: skip
    assert code == 2
    assert "--grace-period, --reduction-factor, --brackets: every trial trains in one step" in out
    assert not (tmp_path / "runs").exists()


def test_a_bracket_without_a_rung_fails_before_any_work(run, tmp_path):
    # bracket 1 would start stopping at epoch 4 x 3 = 12, past the 8 epochs a trial runs
    code, out = run("--model", "bpr", "--set", "train.epochs=8", "--grace-period", "4",
                    "--reduction-factor", "3", "--brackets", "2")  # fmt: skip
    assert code == 2
    assert "--brackets 2: the last bracket's first rung would be at epoch 12, past " in out
    assert not (tmp_path / "runs").exists()


def test_set_beats_the_space_fixed_values(run, tmp_path, monkeypatch):
    captured = {}

    def fake_run_tune(cfg, space, options, **kwargs):
        captured.update(cfg=cfg, space=space, options=options, kwargs=kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("recsys.tuning.driver.run_tune", fake_run_tune)
    with pytest.raises(SystemExit):
        run("--model", "bpr", "--set", "train.epochs=7", "--cpus-per-trial", "0.5",
            "--gpus-per-trial", "0.25", "--address", "127.0.0.1:1", "--brackets", "2")  # fmt: skip
    space, cfg, options = captured["space"], captured["cfg"], captured["options"]
    assert "train.epochs" not in space.fixed  # the default bpr space fixes it; --set wins
    assert space.fixed["train.patience"] == 10
    assert cfg.train.epochs == 7
    assert (options.cpus_per_trial, options.gpus_per_trial) == (0.5, 0.25)
    assert options.brackets == 2
    assert captured["kwargs"]["address"] == "127.0.0.1:1"


def test_an_address_where_no_ray_listens_fails_fast(run):
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out = run("--model", "bpr", "--address", f"127.0.0.1:{port}", "--no-tracking")
    assert code == 2
    # checked before ray.init, whose own retries take minutes
    assert f"cannot reach a Ray head at 127.0.0.1:{port} (--address)" in out


def test_an_unreachable_address_leaves_no_folder_and_no_mlflow_run(run, tmp_path):
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = tmp_path / "mlflow.db"
    uri = f"sqlite:///{store.as_posix()}"
    code, out = run("--model", "bpr", "--address", f"127.0.0.1:{port}", "--set",
                    "train.epochs=2", "--tracking-uri", uri)  # fmt: skip
    assert code == 2 and "cannot reach a Ray head" in out
    # it used to leave base_config.yaml, space.yaml, split.npz and tune.json (which --resume
    # then called "stopped before Ray started") and an MLflow parent run marked FAILED
    assert not (tmp_path / "runs").exists()
    assert not store.exists()


def test_ray_starts_before_the_experiment_folder_exists(run, tmp_path, monkeypatch):
    from recsys.errors import ConfigError

    def failing_session(address, quiet):
        raise ConfigError("cannot join the Ray cluster at auto: (a test)")

    monkeypatch.setattr("recsys.tuning.driver.ray_session", failing_session)
    code, out = run("--model", "bpr", "--address", "auto", "--set", "train.epochs=2",
                    "--no-tracking")  # fmt: skip
    assert code == 2 and "cannot join the Ray cluster at auto" in out
    assert not (tmp_path / "runs").exists()


def test_values_of_the_config_file_that_the_space_overrides_are_named(
    run, captured_run, tmp_path, caplog
):
    config = tmp_path / "config.yaml"
    config.write_text(
        "model: {name: bpr, reg_weight: 0.5}\n"
        "train: {epochs: 20, learning_rate: 0.01, weight_decay: 0.001}\n"
    )
    with caplog.at_level(logging.WARNING, logger="recsys"), pytest.raises(SystemExit):
        run("-c", str(config), "--set", "train.learning_rate=0.02")
    # tune/spaces/bpr.yaml fixes train.epochs and samples model.reg_weight; --set beats it
    assert (
        f"{config} sets values that the space {SPACES / 'bpr.yaml'} fixes train.epochs and "
        "samples model.reg_weight: the space's are used" in caplog.text
    )
    assert "weight_decay" not in caplog.text and "learning_rate" not in caplog.text
    assert captured_run["cfg"].train.weight_decay == 0.001


def test_gpus_without_cuda_fail_before_ray_starts(run, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, out = run("--model", "bpr", "--gpus-per-trial", "0.5", "--no-tracking")
    assert code == 2
    assert "--gpus-per-trial 0.5, but torch" in out and "sees no CUDA device" in out
    assert not (tmp_path / "runs").exists()  # no experiment folder was made


@pytest.fixture
def captured_run(monkeypatch):
    """Replace the Ray experiment with a recorder: what the CLI would run, and nothing more."""
    captured: dict = {}

    def fake_run_tune(cfg, space, options, **kwargs):
        captured.update(cfg=cfg, space=space, options=options, kwargs=kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("recsys.tuning.driver.run_tune", fake_run_tune)
    return captured


def test_set_pins_a_key_the_space_samples(run, captured_run, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        "params:\n"
        "  model.embedding_size: {type: pow2, low: 16, high: 256}\n"
        "  train.learning_rate: {type: choice, values: [0.1, 0.01]}\n"
        "points:\n"
        "  - {model.embedding_size: 16, train.learning_rate: 0.1}\n"
        "  - {model.embedding_size: 64, train.learning_rate: 0.1}\n"
    )
    with pytest.raises(SystemExit):
        run("--model", "bpr", "--space", str(space), "--set", "model.embedding_size=8")
    space_run, cfg = captured_run["space"], captured_run["cfg"]
    # the constant given on the command line is what every trial trains with
    assert cfg.model["embedding_size"] == 8
    assert list(space_run.params) == ["train.learning_rate"]
    assert space_run.points == [{"train.learning_rate": 0.1}]  # equal points run once


def test_set_of_every_sampled_key_leaves_nothing_to_tune(run, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  train.learning_rate: {type: choice, values: [0.1, 0.01]}\n")
    code, out = run("--model", "bpr", "--space", str(space), "--set", "train.learning_rate=0.1")
    assert code == 2
    assert f"{space}: --set gives every sampled key (train.learning_rate) a constant" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grace-period", "4"], "--grace-period 4: trials run at most train.epochs=4 epochs, "
                                  "so the asha scheduler could never stop one"),
        (["--grace-period", "9", "--scheduler", "median"],
         "--grace-period 9: trials run at most train.epochs=4 epochs, so the median scheduler"),
        (["--grace-period", "2", "--scheduler", "none"],
         "--grace-period applies to --scheduler asha or median, not none"),
        (["--reduction-factor", "2", "--scheduler", "median"],
         "--reduction-factor applies to --scheduler asha only (got 'median')"),
    ],
)  # fmt: skip
def test_scheduler_options_that_would_do_nothing(run, tmp_path, args, message):
    code, out = run("--model", "bpr", "--set", "train.epochs=4", *args)
    assert code == 2 and message in out
    assert not (tmp_path / "runs").exists()


def test_run_tune_refuses_them_from_the_api_too(tmp_path):
    from recsys.config import build_run_config
    from recsys.errors import ConfigError
    from recsys.tuning.driver import TuneOptions, run_tune
    from recsys.tuning.space import parse_space

    cfg = build_run_config(None, ["train.epochs=4"], model={"name": "bpr"},
                           data={"name": DATA}, output_dir=str(tmp_path / "runs"))  # fmt: skip
    space = parse_space({"params": {"train.learning_rate": {"type": "grid", "values": [0.01]}}})
    with pytest.raises(ConfigError, match="applies to --scheduler asha or median, not none"):
        run_tune(cfg, space, TuneOptions(scheduler="none", grace_period=2))
    assert not (tmp_path / "runs").exists()


def test_cli_defaults_are_the_tune_options_defaults():
    """The CLI sets only the options typed, so its defaults must be TuneOptions' own."""
    from recsys.cli.tune import _SEARCH_FLAGS, tune
    from recsys.tuning.driver import TuneOptions

    defaults = tune.make_context("tune", [], resilient_parsing=True).params
    for name in _SEARCH_FLAGS:
        assert defaults[name] == TuneOptions.model_fields[name].default, name


def test_the_grace_period_is_checked_against_the_space_epochs(run, captured_run, tmp_path):
    # the default bpr space fixes train.epochs at 100: a grace period of 20 is fine there
    with pytest.raises(SystemExit):
        run("--model", "bpr", "--grace-period", "20")
    assert captured_run["options"].grace_period == 20


def test_a_default_grace_period_is_no_error_for_short_trials(run, captured_run):
    with pytest.raises(SystemExit):
        run("--model", "bpr", "--set", "train.epochs=2")
    assert captured_run["options"].grace_period == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cpus-per-trial", "100000"], "--cpus-per-trial 100000, but this machine has"),
        (["--set", "train.device=cuda"],
         "train.device='cuda', but a trial trains on the GPU Ray assigns it and "
         "--gpus-per-trial is 0"),
        (["--name", "../elsewhere"], "--name '../elsewhere' must be a folder name, not a path"),
        (["--name", ".."], "--name '..' must be a folder name, not a path"),
    ],
)  # fmt: skip
def test_settings_refused_before_any_work(run, tmp_path, args, message):
    code, out = run("--model", "bpr", "--no-tracking", "--set", "train.epochs=2", *args)
    assert code == 2 and message in out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "elsewhere").exists()


def test_an_output_dir_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "results"
    target.write_text("earlier results\n")
    code = main(["tune", "--dataset", DATA, "--model", "bpr", "-o", str(target)])
    assert code == 2
    assert f"output folder {target} (--output-dir) is a file, not a folder" in (
        capsys.readouterr().err
    )
    assert target.read_text() == "earlier results\n"


def test_a_fixed_key_below_a_value_names_the_space_file(run, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        "fixed:\n  model.embedding_size.width: 3\n"
        "params:\n  train.learning_rate: {type: choice, values: [0.1, 0.01]}\n"
    )
    code, out = run("--model", "bpr", "--space", str(space))
    assert code == 2
    assert f"{space}: fixed values (model.embedding_size.width) are invalid" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--num-samples", "20"],
        ["--scheduler", "none"],
        ["--grace-period", "3"],
        ["--cpus-per-trial", "2"],
        ["--max-failures", "0"],
        ["--seed", "1"],
        ["--search-alg", "optuna"],
    ],
)
def test_resume_refuses_search_options_it_would_ignore(tmp_path, capsys, args):
    assert main(["tune", "--resume", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert f"--resume continues the experiment as it was set up; drop {args[0]}" in err


# --------------------------------------------------------------------------- damaged folders


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    """An experiment folder as run_tune leaves it, without running Ray (Ray's own state is
    taken as restorable: these checks come before Ray starts)."""
    import hashlib
    import json

    from recsys.config import build_run_config
    from recsys.data.catalog import load_dataset
    from recsys.data.split import make_split, resolve_split_config
    from recsys.tuning.driver import TuneOptions

    monkeypatch.setattr("ray.tune.Tuner.can_restore", lambda path: True)
    folder = tmp_path / "tune-bpr"
    folder.mkdir()
    cfg = build_run_config(
        None, ["train.epochs=2"], model={"name": "bpr"}, data={"name": DATA},
        tracking={"enabled": False}, output_dir=str(tmp_path),
    )  # fmt: skip
    dataset = load_dataset(cfg.data)
    cfg = cfg.model_copy(update={"split": resolve_split_config(dataset, cfg.split)})
    (folder / "base_config.yaml").write_text(cfg.to_yaml())
    make_split(dataset, cfg.split).save(folder / "split.npz")
    state = {
        "model": "bpr",
        "dataset": DATA,
        "metric": "ndcg_at_10",
        "max_epochs": 2,
        "options": TuneOptions(num_samples=2).model_dump(mode="json"),
        "address": None,
        "tracking": None,
        "checksums": {
            name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in ("base_config.yaml", "split.npz")
        },
    }
    (folder / "tune.json").write_text(json.dumps(state))
    return folder


def _resume(folder, capsys) -> tuple[int, str]:
    code = main(["tune", "--resume", str(folder)])
    return code, capsys.readouterr().err


def test_resume_a_corrupt_tune_json(experiment, capsys):
    (experiment / "tune.json").write_text('{"model": ')
    code, err = _resume(experiment, capsys)
    assert code == 2
    assert f"error: {experiment / 'tune.json'} is not valid JSON" in err
    assert "Traceback" not in err


def test_resume_a_tune_json_without_options(experiment, capsys):
    import json

    state = json.loads((experiment / "tune.json").read_text())
    del state["options"], state["max_epochs"]
    (experiment / "tune.json").write_text(json.dumps(state))
    code, err = _resume(experiment, capsys)
    assert code == 2 and f"{experiment / 'tune.json'} lacks max_epochs, options" in err


def test_resume_with_invalid_options_in_tune_json(experiment, capsys):
    import json

    state = json.loads((experiment / "tune.json").read_text())
    state["options"]["num_samples"] = 0
    (experiment / "tune.json").write_text(json.dumps(state))
    code, err = _resume(experiment, capsys)
    assert code == 2
    assert f"{experiment / 'tune.json'}: invalid tuning options: num_samples: " in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [\n", "base_config.yaml is not valid YAML"),
        ("- 1\n", "base_config.yaml must hold a run config"),
        ("model: {name: bpr, embedding_size: -16}\n",
         "base_config.yaml: model.embedding_size: Input should be greater than 0"),
    ],
)  # fmt: skip
def test_resume_an_invalid_base_config(experiment, capsys, text, message):
    import json

    state = json.loads((experiment / "tune.json").read_text())
    del state["checksums"]  # an experiment from before checksums: the content is checked
    (experiment / "tune.json").write_text(json.dumps(state))
    (experiment / "base_config.yaml").write_text(text)
    code, err = _resume(experiment, capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_resume_refuses_an_edited_base_config(experiment, capsys):
    path = experiment / "base_config.yaml"
    # still a valid config, but the remaining trials would train another one
    path.write_text(path.read_text().replace("learning_rate: 0.001", "learning_rate: 0.01"))
    code, err = _resume(experiment, capsys)
    assert code == 2
    assert f"{path} changed since the experiment started" in err


def test_resume_without_the_split(experiment, capsys):
    (experiment / "split.npz").unlink()
    code, err = _resume(experiment, capsys)
    assert code == 2
    assert f"{experiment / 'split.npz'} is missing; the experiment cannot resume" in err
