import pytest

from recsys.config import apply_overrides, build_run_config, parse_override
from recsys.errors import ConfigError


def test_overrides_parse_values_as_yaml():
    assert parse_override("train.learning_rate=0.01") == (["train", "learning_rate"], 0.01)
    assert parse_override("eval.topk=[5, 10]") == (["eval", "topk"], [5, 10])
    assert parse_override("tracking.enabled=false") == (["tracking", "enabled"], False)
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2", "d.e=x"]) == {
        "a": {"b": 1, "c": 2},
        "d": {"e": "x"},
    }


def test_resolved_config_fills_model_defaults():
    cfg = build_run_config(model={"name": "lightgcn"})
    assert cfg.model == {
        "name": "lightgcn",
        "embedding_size": 64,
        "n_layers": 2,
        "reg_weight": 1e-4,
        "init_std": 0.1,
        "propagation": "sparse",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["split.ratios=[0.5, 0.5, 0.5]"], "split.ratios"),
        (["eval.topk=[0]"], "topk"),
        (["eval.metrics=[recal]"], "recal"),
        (["bogus=1"], "unknown key 'bogus'"),
        (["train.valid_metric=mrr_at_20", "eval.metrics=[recall]"], "not computed by eval"),
        (["train.device=tpu:0"], "train.device"),
        (["model.name=lightgcn", "model.propagation=dense"], "propagation"),
        (["train=3"], "train"),
        (["train.epochs=3.5"], "train.epochs"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_run_config(overrides=overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_run_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_run_config(bad)
