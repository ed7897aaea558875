"""The DNIS sweep in tune/spaces/dnis.yaml: it validates, and its trials train."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import build_run_config
from recsys.errors import ConfigError
from recsys.tuning.space import load_space, parse_space, set_dotted
from recsys.tuning.trainable import trial_run_config

SPACE = Path(__file__).resolve().parents[2] / "tune" / "spaces" / "dnis.yaml"
DATA = "synthetic-300x200x6000"


def _base(tmp_path, *overrides: str) -> dict:
    cfg = build_run_config(
        None,
        list(overrides),
        model={"name": "dnis"},
        data={"name": DATA},
        tracking={"enabled": False},
        output_dir=str(tmp_path / "runs"),
    )
    return cfg.model_dump(mode="json")


def test_the_dnis_space_validates_against_the_model(tmp_path):
    space = load_space(SPACE, base=_base(tmp_path))
    assert {"model.keep_ratio", "model.l1_weight", "model.n_blocks"} <= set(space.params)
    assert space.grid_keys == ["model.keep_ratio"] and space.grid_size() == 4
    # around another base too
    load_space(SPACE, base=_base(tmp_path, "model.base=lightgcn"))


def test_bad_dnis_values_fail_before_any_trial(tmp_path):
    with pytest.raises(ConfigError, match=r"model.keep_ratio, value 1.5"):
        parse_space(
            {"params": {"model.keep_ratio": {"type": "choice", "values": [0.5, 1.5]}}},
            base=_base(tmp_path),
        )


def test_a_trial_of_the_space_trains(tmp_path):
    from recsys.data.catalog import load_dataset
    from recsys.data.split import make_split
    from recsys.experiment import make_evaluator
    from recsys.models.registry import create_model
    from recsys.train.trainer import Trainer

    space = load_space(SPACE, base=_base(tmp_path))
    base = _base(tmp_path)
    for key, value in space.fixed.items():  # what the driver does before any trial
        set_dotted(base, key, value)
    point = {"model.keep_ratio": 0.25, "model.l1_weight": 1e-4, "model.n_blocks": 5}
    cfg = trial_run_config(
        base,
        {**point, "model.warm_start_epochs": 1, "model.search_epochs": 1},
        num_threads=1,
        progress=False,
    )
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 3})})
    assert cfg.model["base_params"]["embedding_size"] == 64
    dataset = load_dataset(cfg.data)
    split = make_split(dataset, cfg.split, default="ratio")
    model = create_model("dnis", **cfg.model_params())
    result = Trainer(model, split, cfg.train, make_evaluator(cfg)).fit()
    assert result.epochs_run == 3 and model.is_compact()
    assert abs(model.kept_parameters() / model.full_parameters() - 0.25) < 0.02


@pytest.mark.slow
def test_one_tiny_tune_trial_runs_through_ray(tmp_path):
    from recsys.tuning.driver import TuneOptions, run_tune

    cfg = build_run_config(
        None,
        [
            "train.epochs=3",
            "train.batch_size=512",
            "model.warm_start_epochs=1",
            "model.search_epochs=1",
            "model.base_params.embedding_size=16",
        ],
        model={"name": "dnis"},
        data={"name": DATA},
        tracking={"enabled": False},
        output_dir=str(tmp_path / "runs"),
    )
    space = parse_space({"params": {"model.keep_ratio": {"type": "grid", "values": [0.5]}}})
    outcome = run_tune(cfg, space, TuneOptions(num_samples=1, scheduler="none", verbose=0))
    assert [t.epochs for t in outcome.trials] == [3]
    assert outcome.best is not None and outcome.test
