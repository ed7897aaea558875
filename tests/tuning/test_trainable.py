"""The trial's building blocks without Ray: device choice, trial config, injected faults."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from recsys.config import build_run_config
from recsys.errors import ConfigError
from recsys.tuning import trainable
from recsys.tuning.driver import TrialRow, TuneOptions, format_trials_table
from recsys.tuning.trainable import (
    InjectedFault,
    InjectedFaultError,
    best_metric_key,
    metric_key,
    select_device,
    trial_run_config,
)


@pytest.mark.parametrize(
    ("gpu_ids", "cuda", "visible", "expected"),
    [
        ([], False, None, "cpu"),
        ([], True, "0,1", "cpu"),  # a GPU machine, but Ray gave this trial none
        (["0"], True, "0", "cuda:0"),
        (["3"], True, "3", "cuda:0"),  # Ray sets CUDA_VISIBLE_DEVICES to the assigned GPU
        (["2", "3"], True, "2,3", "cuda:0"),
        (["3"], True, "1,3", "cuda:1"),
        ([1], True, None, "cuda:1"),  # RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES: ids index
        (["GPU-5f1e"], True, "GPU-5f1e", "cuda:0"),  # UUIDs in CUDA_VISIBLE_DEVICES
        (["GPU-5f1e"], True, None, "cuda:0"),
    ],
)
def test_select_device(gpu_ids, cuda, visible, expected):
    assert select_device(gpu_ids, cuda, visible) == expected


def test_select_device_refuses_a_gpu_torch_cannot_see():
    with pytest.raises(ConfigError, match=r"Ray assigned GPU\(s\) \['0'\].*no CUDA device"):
        select_device(["0"], cuda_available=False, visible_devices="0")


def _fake_ray(monkeypatch, gpu_ids, cuda, visible):
    import ray
    import torch

    context = types.SimpleNamespace(get_accelerator_ids=lambda: {"GPU": gpu_ids, "CPU": []})
    monkeypatch.setattr(ray, "get_runtime_context", lambda: context)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)


def test_the_trial_device_follows_what_ray_assigned(monkeypatch):
    _fake_ray(monkeypatch, ["1"], cuda=True, visible="1")
    assert trainable._ray_device() == "cuda:0"
    _fake_ray(monkeypatch, [], cuda=True, visible=None)
    assert trainable._ray_device() == "cpu"
    _fake_ray(monkeypatch, ["0"], cuda=False, visible="0")
    with pytest.raises(ConfigError):
        trainable._ray_device()


def test_trial_run_config_sets_sampled_keys_and_train_settings():
    base = build_run_config(None, [], model={"name": "bpr"}).model_dump(mode="json")
    cfg = trial_run_config(
        base,
        {"model.embedding_size": np.int64(32), "train.learning_rate": np.float64(0.01)},
        device="cpu",
        num_threads=2,
        progress=False,
        seed=None,  # None leaves the base value alone
    )
    assert cfg.model["embedding_size"] == 32 and type(cfg.model["embedding_size"]) is int
    assert cfg.train.learning_rate == 0.01
    assert (cfg.train.device, cfg.train.num_threads, cfg.train.progress) == ("cpu", 2, False)
    assert cfg.train.seed == base["train"]["seed"]
    assert base["model"]["embedding_size"] == 64  # the base is not modified
    with pytest.raises(ConfigError, match="embedding_size"):
        trial_run_config(base, {"model.embedding_size": -1})


def test_metric_names():
    assert metric_key("ndcg_at_10") == "valid/ndcg_at_10"
    assert best_metric_key("recall_at_20") == "best_valid/recall_at_20"


def test_injected_fault_fires_once_per_experiment(tmp_path):
    fault = InjectedFault(epoch=2, marker_dir=str(tmp_path / "marker"))
    fault(1, "a")  # other epochs pass
    with pytest.raises(InjectedFaultError, match="trial a at epoch 2"):
        fault(2, "a")
    fault(2, "a")  # the restarted trial passes
    fault(2, "b")  # and so does every other trial
    assert (tmp_path / "marker" / "injected-fault").read_text().split() == ["a", "2"]


def test_tune_options_validate():
    assert TuneOptions().scheduler == "asha"
    with pytest.raises(ValueError):
        TuneOptions(scheduler="hyperband")
    with pytest.raises(ValueError):
        TuneOptions(reduction_factor=1)
    with pytest.raises(ValueError):
        TuneOptions(cpus_per_trial=0)


def test_asha_brackets_start_their_first_rung_later():
    from recsys.tuning.driver import _scheduler

    options = TuneOptions(grace_period=2, reduction_factor=2, brackets=3)
    scheduler = _scheduler(options, max_epochs=16)
    # Ray keeps each bracket's rungs last-first: bracket s stops trials from 2 * 2**s on
    rungs = [[milestone for milestone, _ in b._rungs] for b in scheduler._brackets]
    assert rungs == [[16, 8, 4, 2], [16, 8, 4], [16, 8]]
    with pytest.raises(ValueError, match="--brackets 2 applies to --scheduler asha only"):
        TuneOptions(scheduler="none", brackets=2)


def test_trials_table_puts_the_best_first_and_marks_it():
    rows = [
        TrialRow("t1", "TERMINATED", {"train.learning_rate": 0.01}, 8, 0.31, 7, "completed"),
        TrialRow("t2", "TERMINATED", {"train.learning_rate": 0.5}, 2, 0.05, 1, "scheduler"),
        TrialRow("t3", "ERROR", {"train.learning_rate": 0.1}, 0, -math.inf, 0, "error"),
    ]
    lines = format_trials_table(rows, "ndcg_at_10", best="t1").splitlines()
    assert lines[0].split() == [
        "trial", "status", "stop", "epochs", "learning_rate", "best", "ndcg_at_10", "@epoch",
    ]  # fmt: skip
    assert lines[2].split() == ["*", "t1", "terminated", "completed", "8", "0.01", "0.3100", "7"]
    assert lines[4].split() == ["t3", "error", "error", "0", "0.1"]
    assert "more trials" in format_trials_table(rows, "ndcg_at_10", limit=2)


def test_trials_table_marks_the_chosen_best_only():
    # a first row that is no result (it diverged), and an interrupted experiment (no best):
    # the star used to go on the first row with a finite value
    rows = [
        TrialRow("t1", "TERMINATED", {"train.learning_rate": 100.0}, 2, 0.09, 0, "diverged"),
        TrialRow("t2", "TERMINATED", {"train.learning_rate": 0.01}, 4, 0.05, 3, "completed"),
    ]
    lines = format_trials_table(rows, "ndcg_at_10", best="t2").splitlines()
    assert lines[2].split()[0] == "t1" and lines[3].split()[0] == "*"
    lines = format_trials_table(rows, "ndcg_at_10", best=None).splitlines()
    assert not any(line.startswith("*") for line in lines)


def test_trials_csv_keeps_integer_columns_integer(tmp_path):
    from recsys.tuning.driver import trials_frame

    # an interrupted experiment: the pending trial has no sampled values yet
    params = {"train.batch_size": 1024, "train.learning_rate": 0.01}
    rows = [
        TrialRow("t1", "TERMINATED", params, 8, 0.31, 7, "completed"),
        TrialRow("t2", "PENDING", {}, 0, -math.inf, 0, "interrupted"),
    ]
    path = tmp_path / "trials.csv"
    trials_frame(rows, "ndcg_at_10").to_csv(path, index=False)
    header, first, second = path.read_text().splitlines()
    columns = header.split(",")
    assert first.split(",")[columns.index("train.batch_size")] == "1024"  # not 1024.0
    assert first.split(",")[columns.index("epochs")] == "8"
    assert second.split(",")[columns.index("train.batch_size")] == ""


def test_best_config_notes_a_trial_that_trained_on_a_gpu(tmp_path):
    from recsys.tuning.driver import best_config_header

    cfg = build_run_config(None, [], model={"name": "bpr"})
    row = TrialRow("t1", "TERMINATED", {}, 8, 0.31, 7, "completed", device="cuda:0")
    header = best_config_header(tmp_path / "exp", row, cfg)
    assert header.startswith("# best configuration of tune experiment exp: trial t1")
    assert all(line.startswith("# ") for line in header.splitlines())
    assert (
        "# the trial trained on cuda:0; train.device below is 'cpu', so this trains there: "
        "add --set train.device=cuda to train it as the trial did"
    ) in header
    cpu = TrialRow("t1", "TERMINATED", {}, 8, 0.31, 7, "completed", device="cpu")
    assert "trained on" not in best_config_header(tmp_path / "exp", cpu, cfg)


def test_the_benchmark_replays_rays_asha_rule():
    from benchmarks.tune_asha_ml100k import replay_asha

    # three trials with flat curves; one worker, so they run one after another
    curves = {"good": [0.3] * 9, "bad": [0.1] * 9, "mid": [0.2] * 9}
    # worst first: every later trial beats what the rungs recorded, nobody is stopped
    assert replay_asha(curves, ["bad", "mid", "good"], cap=9, grace=1, rf=3, workers=1) == (
        27,
        0.3,
    )
    # best first: the others fall below the rung's cutoff at their first rung (epoch 1)
    assert replay_asha(curves, ["good", "bad", "mid"], cap=9, grace=1, rf=3, workers=1) == (
        11,
        0.3,
    )
    # with a second bracket (rungs from epoch 3 on) a weak trial that joins it gets past epoch 1
    spent = {
        replay_asha(curves, ["good", "bad", "mid"], 9, 1, 3, workers=1, brackets=2,
                    rng=np.random.default_rng(seed))[0]
        for seed in range(20)
    }  # fmt: skip
    assert min(spent) >= 11 and max(spent) > 11


def test_the_benchmark_replays_synchronous_halving_without_an_order():
    from benchmarks.tune_asha_ml100k import replay_sync_halving

    # a slow starter that ends best, and three that start fast and plateau
    curves = {
        "slow": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
        "fast": [0.3] * 9,
        "mid": [0.2] * 9,
        "low": [0.1] * 9,
    }
    # rung 1: ceil(4/3) = 2 go on (fast, mid); rung 3: ceil(2/3) = 1 (fast) runs to 9
    assert replay_sync_halving(curves, cap=9, grace=1, rf=3) == (1 + 1 + 3 + 9, 0.3)
    # a grace period of 5 lets the slow starter show (0.4 > 0.3): it and fast run to the cap
    assert replay_sync_halving(curves, cap=9, grace=5, rf=3) == (5 + 5 + 9 + 9, 0.8)
    # a trainer's early stop ends a curve: that trial stops where it ends (epoch 2) and the
    # other survivor of rung 1 (mid) goes on alone
    short = dict(curves, fast=[0.3] * 2)
    assert replay_sync_halving(short, cap=9, grace=1, rf=3) == (1 + 1 + 2 + 9, 0.3)
