"""`recsys tune` mistakes caught before Ray starts: clear messages, exit status 2."""

from __future__ import annotations

import pytest

from recsys.cli import main
from tests.tuning.conftest import DATA


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
    assert code == 2 and "brackets=2 needs scheduler 'asha' (got 'median')" in out


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


def test_gpus_without_cuda_fail_before_ray_starts(run, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, out = run("--model", "bpr", "--gpus-per-trial", "0.5", "--no-tracking")
    assert code == 2
    assert "--gpus-per-trial 0.5, but torch" in out and "sees no CUDA device" in out
    assert not (tmp_path / "runs").exists()  # no experiment folder was made
