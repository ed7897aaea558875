"""DNIS's schedule against train.epochs, and which epoch a DNIS run saves."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from recsys.cli import main
from recsys.errors import ConfigError
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model
from recsys.train.trainer import TrainConfig, Trainer

DATA = "synthetic-200x120x3000"
SPACE = Path(__file__).resolve().parents[2] / "tune" / "spaces" / "dnis.yaml"
QUICK = ["--set", "train.batch_size=512", "--set", "model.n_blocks=4", "--no-tracking", "--quiet"]
FAST = {"batch_size": 512, "learning_rate": 0.01, "progress": False}
METRIC = "ndcg_at_10"


def _setup(split, **params):
    torch.manual_seed(0)
    values = {"base": "bpr", "base_params": {"embedding_size": 16}, "n_blocks": 4, **params}
    return create_model("dnis", **values).setup(split.train)


class ScriptedValidation(Evaluator):
    """Real metrics, except the selection metric, which follows ``script`` epoch by epoch (so
    a test can make a search epoch validate best)."""

    def __init__(self, script: list[float]) -> None:
        super().__init__(topk=(10, 20))
        self.script = list(script)

    def evaluate(self, *args, **kwargs):
        metrics = dict(super().evaluate(*args, **kwargs))
        metrics[METRIC] = self.script.pop(0)
        return metrics


def _fit(split, model, script, **train):
    trainer = Trainer(model, split, TrainConfig(**{**FAST, **train}), ScriptedValidation(script))
    pruned = {}

    def at_pruning(report):
        if bool(model.pruned) and not pruned:  # the first fine-tuning epoch: widths fixed
            pruned.update(model.block_dims())

    trainer.callbacks = [at_pruning]
    return trainer.fit(), pruned


# -- train.epochs must reach the pruning -----------------------------------------------------


def test_recsys_dnis_refuses_epochs_that_end_before_pruning(tmp_path, capsys):
    # the defaults: 20 warm-start and 10 search epochs, so 2 epochs never prune
    out = tmp_path / "runs"
    code = main(["dnis", "--dataset", DATA, "-o", str(out), "--set", "train.epochs=2", *QUICK])
    assert code == 2
    err = capsys.readouterr().err
    assert "train.epochs=2 is too few for the DNIS schedule" in err
    assert "model.warm_start_epochs=20" in err and "model.search_epochs=10" in err
    assert "train.epochs >= 31" in err
    assert not out.exists()  # refused before any data was read or run folder made


def test_recsys_train_refuses_them_before_a_run_folder_exists(tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["train", "--model", "dnis", "--dataset", DATA, "-o", str(out)]
    assert main([*args, "--set", "train.epochs=30", *QUICK]) == 2
    assert "need train.epochs >= 31" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("finetune", [True, False])
def test_the_schedule_needs_warm_start_search_and_one_fine_tuning_epoch(planted_split, finetune):
    # 1 warm-start and 2 search epochs; pruning opens the first fine-tuning epoch, and without
    # fine-tuning the schedule ends with the search
    need = 4 if finetune else 3
    model = _setup(planted_split, warm_start_epochs=1, search_epochs=2, finetune=finetune)
    too_few = Trainer(model, planted_split, TrainConfig(**FAST, epochs=need - 1), Evaluator())
    with pytest.raises(ConfigError, match=f"train.epochs={need - 1} is too few"):
        too_few.fit()
    model = _setup(planted_split, warm_start_epochs=1, search_epochs=2, finetune=finetune)
    result = Trainer(model, planted_split, TrainConfig(**FAST, epochs=need), Evaluator()).fit()
    assert result.epochs_run == need and model.schedule_epochs() == need
    assert model.is_compact() and model.kept_parameters() < model.full_parameters()


def test_a_schedule_without_any_epoch_is_refused(planted_split):
    with pytest.raises(ConfigError, match="model.finetune=false with model.warm_start_epochs=0"):
        create_model("dnis", finetune=False, warm_start_epochs=0, search_epochs=0)
    # fixed widths train from the first epoch, whatever the search settings
    dims = {"user": [8, 4, 4, 2], "item": [8, 4, 2, 2]}
    model = _setup(
        planted_split, block_dims=dims, finetune=False, warm_start_epochs=0, search_epochs=0
    )
    result = Trainer(model, planted_split, TrainConfig(**FAST, epochs=1), Evaluator()).fit()
    assert result.epochs_run == 1 and model.block_dims() == dims


def test_recsys_tune_refuses_a_space_whose_epochs_end_before_pruning(tmp_path, monkeypatch, capsys):
    from recsys.tuning import driver

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(driver, "ray_session", no_ray)
    space = tmp_path / "space.yaml"
    space.write_text(
        "fixed:\n  train.epochs: 12\n  model.warm_start_epochs: 10\n"
        "params:\n  model.keep_ratio: {type: grid, values: [0.5, 0.25]}\n"
    )
    out = tmp_path / "runs"
    code = main(["tune", "--model", "dnis", "--dataset", DATA, "--space", str(space),
                 "-o", str(out), "--no-tracking", "--quiet", "--scheduler", "none"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "train.epochs=12 is too few" in err and "train.epochs >= 21" in err
    assert not out.exists() or not any(out.iterdir())


def test_the_shipped_dnis_space_fits_its_schedule():
    from recsys.config import build_run_config
    from recsys.tuning.space import load_space
    from recsys.tuning.trainable import trial_run_config

    base = build_run_config(None, [], model={"name": "dnis"}).model_dump(mode="json")
    space = load_space(SPACE, base=base)
    cfg = trial_run_config(base, space.fixed)
    model = create_model("dnis", **cfg.model_params())
    model.check_train_config(cfg.train)
    assert cfg.train.epochs >= model.schedule_epochs() == 31


# -- which epoch is saved ----------------------------------------------------------------------

# epochs 0-1 warm start, 2-3 search, 4 onwards fine-tuning; search epoch 2 validates best
SCRIPT = [0.1, 0.2, 0.9, 0.3, 0.4, 0.5, 0.6, 0.55]


def test_the_saved_model_is_the_best_fine_tuning_epoch_at_the_pruned_widths(planted_split):
    model = _setup(planted_split, warm_start_epochs=2, search_epochs=2)
    result, pruned = _fit(planted_split, model, SCRIPT, epochs=8, patience=5)
    # a search epoch scored higher, but it is not the fine-tuned model
    assert result.best_epoch == 6 and result.best_valid[METRIC] == 0.6
    assert model.is_compact() and model.block_dims() == pruned


def test_early_stopping_counts_from_the_first_fine_tuning_epoch(planted_split):
    # patience 2: fine-tuning epochs 4 and 5 are below search epoch 2, yet each improves on
    # the fine-tuning before it, so training goes on to the end (it stopped at epoch 5)
    model = _setup(planted_split, warm_start_epochs=2, search_epochs=2)
    result, _ = _fit(planted_split, model, SCRIPT, epochs=8, patience=2)
    assert result.epochs_run == 8 and not result.stopped_early and result.best_epoch == 6
    # and after the best, two validations without improvement stop it
    model = _setup(planted_split, warm_start_epochs=2, search_epochs=2)
    script = [0.1, 0.2, 0.9, 0.3, 0.4, 0.35, 0.3, 0.2, 0.1]
    result, _ = _fit(planted_split, model, script, epochs=9, patience=2)
    assert result.best_epoch == 4 and result.stopped_early and result.epochs_run == 7


def test_best_epoch_from_any_keeps_a_search_epoch_that_validates_best(planted_split, caplog):
    model = _setup(planted_split, warm_start_epochs=2, search_epochs=2, best_epoch_from="any")
    with caplog.at_level(logging.INFO, logger="recsys.models.dnis"):
        result, _ = _fit(planted_split, model, SCRIPT, epochs=8, patience=2)
    assert result.best_epoch == 2 and result.best_valid[METRIC] == 0.9
    assert result.epochs_run == 6 and result.stopped_early  # 2 fine-tuning epochs below it
    assert model.is_compact()
    assert "best epoch of any phase (model.best_epoch_from=any)" in caplog.text


def test_recsys_dnis_says_which_epoch_it_saved(tmp_path, capsys):
    args = ["dnis", "--dataset", DATA, "-o", str(tmp_path / "runs"), *QUICK]
    schedule = ["--set", "train.epochs=4", "--set", "model.warm_start_epochs=1",
                "--set", "model.search_epochs=1", "-p", "embedding_size=16"]  # fmt: skip
    assert main([*args, *schedule, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["phase"] == "finetune" and summary["best_epoch"] in (2, 3)
    run = Path(summary["run_dir"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_epoch"] == summary["best_epoch"]
    assert json.loads((run / "dnis_dimensions.json").read_text()) == summary["dimensions"]
    assert main([*args, *schedule]) == 0
    assert "saved model: best epoch" in capsys.readouterr().out
