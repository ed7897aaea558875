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


def _float_fields(config_class) -> list[str]:
    """Keys of ``config_class`` whose type admits a float (``float``, ``float | None``)."""
    return [
        name
        for name, field in config_class.model_fields.items()
        if float in getattr(field.annotation, "__args__", ()) or field.annotation is float
    ]


def test_every_model_refuses_infinite_and_nan_hyper_parameters():
    # NaN passes every range check and ``ge=0`` admits inf: each would train silently wrong
    from recsys.models.base import build_config
    from recsys.models.registry import get_model_class, list_models

    checked = 0
    for info in list_models():
        config_class = get_model_class(info.name).config_class
        for key in _float_fields(config_class):
            for bad in (float("inf"), float("nan")):
                with pytest.raises(ConfigError, match=f"model.{key}: .*finite"):
                    build_config(config_class, {key: bad})
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    "override",
    ["model.reg_weight=inf", "train.learning_rate=nan", "data.rating_threshold=.inf",
     "split.valid_ratio=nan", "eval.tail_share=nan", "train.clip_grad_norm=inf"],
)  # fmt: skip
def test_train_refuses_infinite_and_nan_settings_before_any_work(override, tmp_path, capsys):
    from recsys.cli import main

    code = main(["train", "--model", "bpr", "--dataset", "synthetic-120x80x2400",
                 "--no-tracking", "--quiet", "-o", str(tmp_path), "--set", override])  # fmt: skip
    assert code == 2
    key = override.partition("=")[0]
    assert f"error: {key}: Input should be a finite number" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_model_config_error_is_reported_once():
    # the model section is validated by the model's own config class; its message is not
    # wrapped again with the whole section echoed
    with pytest.raises(ConfigError) as info:
        build_run_config(overrides=["model.name=bpr", "model.embedding_size=0"])
    assert str(info.value) == "model.embedding_size: Input should be greater than 0 (got 0)"


def test_the_plugin_check_for_refused_settings_can_fail(tmp_path):
    from recsys.testing import check_bad_setting_refused

    check_bad_setting_refused("bpr", "model.reg_weight=inf", "model.reg_weight", tmp_path / "a")
    # a valid setting trains: the check must say so rather than pass
    with pytest.raises(AssertionError, match="exit status 0"):
        check_bad_setting_refused("bpr", "model.reg_weight=0.1", "model.reg_weight", tmp_path / "b")
    # refused, but the message names another key
    with pytest.raises(AssertionError, match="no one error line naming"):
        check_bad_setting_refused("bpr", "model.reg_weight=inf", "model.embedding", tmp_path / "c")
