"""Run configs from ``--set`` values and YAML files: values read as typed, files checked, and
a run's config.yaml accepted back unchanged."""

from pathlib import Path

import pytest
import yaml

from recsys.cli import main
from recsys.config import build_run_config, parse_override
from recsys.errors import ConfigError

DATA = "synthetic-120x80x2400"


def _train(tmp_path: Path, *args: str) -> int:
    return main(["train", "--dataset", DATA, "--no-tracking", "--quiet",
                 "-o", str(tmp_path / "runs"), "--set", "train.epochs=1", *args])  # fmt: skip


def _saved_config(tmp_path: Path) -> dict:
    (path,) = (tmp_path / "runs").glob("*/config.yaml")
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("train.seed=010", ("train", "seed"), 10),  # not YAML 1.1's octal 8
        ("train.epochs=1e3", ("train", "epochs"), 1000),
        ("train.learning_rate=1e-3", ("train", "learning_rate"), 1e-3),
        ("data.name=007", ("data", "name"), "007"),
        ("run_name=2024-01-05", ("run_name",), "2024-01-05"),
        ("run_name=1:30", ("run_name",), "1:30"),  # not sexagesimal 90
        ("tracking.experiment=yes", ("tracking", "experiment"), "yes"),
        ("tracking.enabled=yes", ("tracking", "enabled"), True),
        ("tracking.enabled=Off", ("tracking", "enabled"), False),
        ("data.sep=|", ("data", "sep"), "|"),  # not an empty block scalar
        ("data.sep=#", ("data", "sep"), "#"),  # not a comment
    ],
)
def test_set_values_are_read_as_meant(override, key, expected):
    value = build_run_config(overrides=[override]).model_dump(mode="json")
    for part in key:
        value = value[part]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("override", [".epochs=3", "train..epochs=3", "train.=3"])
def test_set_key_with_an_empty_part_is_named(override):
    with pytest.raises(ConfigError, match=r"key '.*' has an empty part"):
        parse_override(override)


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--set", "eval.topk=[1,"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n\tepochs: 2\n")
    assert main(["train", "-c", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith("error: override 'eval.topk=[1,': value is not valid YAML (")
    assert err[1].startswith(f"error: config file {bad} is not valid YAML: ")
    assert "'\\t'" in err[1] and "(line 2, column 1)" in err[1]


def test_cross_key_error_has_no_placeholder_key(tmp_path, capsys):
    assert _train(tmp_path, "--set", "eval.metrics=[recall]") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.valid_metric='ndcg_at_10' is not computed by eval")


@pytest.mark.parametrize(
    "text",
    ["train:\n  epochs: 1\n  epochs: 2\n", "train:\n  epochs: 1\nmodel: {name: bpr}\ntrain: {}\n"],
)
def test_config_file_key_given_twice_is_an_error(tmp_path, capsys, text):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    assert _train(tmp_path, "-c", str(config)) == 2
    assert "is given twice" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_config_file_yaml_merge_keys_are_not_duplicates(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  <<: {epochs: 5, batch_size: 64}\n  epochs: 2\n")
    assert build_run_config(config).train.batch_size == 64
    assert build_run_config(config).train.epochs == 2


def test_config_file_empty_sections_take_defaults(tmp_path):
    # every key of a section commented out: the section is null in YAML
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  # name: lightgcn\ntrain:\n  # epochs: 5\neval:\n")
    cfg = build_run_config(config)
    assert cfg.model["name"] == "bpr" and cfg.train.epochs == 300


def test_default_model_is_recorded_with_its_defaults(tmp_path):
    # no --model: the run's config.yaml holds bpr's hyper-parameters like any other model's
    assert _train(tmp_path) == 0
    assert _saved_config(tmp_path)["model"] == {
        "name": "bpr",
        "embedding_size": 64,
        "reg_weight": 0.0,
    }


def test_model_flag_replaces_another_models_settings_from_the_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: {name: lightgcn, n_layers: 3}\n")
    assert _train(tmp_path, "-c", str(config), "--model", "bpr", "--model", "lightgcn") == 0
    models = {c["model"]["name"]: c["model"] for c in map(
        lambda p: yaml.safe_load(p.read_text()), (tmp_path / "runs").glob("*/config.yaml")
    )}  # fmt: skip
    assert models["bpr"] == {"name": "bpr", "embedding_size": 64, "reg_weight": 0.0}
    assert models["lightgcn"]["n_layers"] == 3  # the file's model keeps its settings


def test_sections_may_hold_paths():
    cfg = build_run_config(output_dir=Path("somewhere"), data={"name": DATA, "path": Path("x")})
    assert cfg.output_dir == Path("somewhere")
    assert cfg.data.path == Path("x").absolute()


@pytest.mark.parametrize(
    "overrides",
    [
        ["run_name='1e5'", "tracking.experiment='yes'", "data.name='010'"],
        ["data.columns={user: u, item: i, rating: r}"],
        ["model.name=dnis", "model.n_blocks=2", "model.block_dims={user: [8, 4], item: [8, 2]}"],
        ["model.name=twotower", "model.item_features=[genre, text]"],
        ["model.name=multvae", "split.strategy=heldout_users", "split.heldout_users=[5, 0.2]"],
    ],
)
def test_config_yaml_reads_back_unchanged(tmp_path, overrides):
    cfg = build_run_config(overrides=overrides)
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    again = build_run_config(path)
    assert again == cfg
    assert again.to_yaml() == cfg.to_yaml()  # key order kept too
    assert yaml.safe_load(cfg.to_yaml()) == cfg.model_dump(mode="json")


def test_train_accepts_its_own_config_back(tmp_path):
    assert _train(tmp_path, "--model", "dnis", "--set", "model.n_blocks=2",
                  "--set", "model.block_dims={user: [8, 4], item: [8, 2]}",
                  "--set", "model.finetune=false", "--set", "run_name=007") == 0  # fmt: skip
    (first,) = (tmp_path / "runs").glob("*/config.yaml")
    rerun = tmp_path / "rerun"
    assert main(["train", "-c", str(first), "-o", str(rerun), "--quiet"]) == 0
    (second,) = rerun.glob("*/config.yaml")
    saved = yaml.safe_load(first.read_text())
    assert saved["run_name"] == "007"
    assert yaml.safe_load(second.read_text()) == {**saved, "output_dir": str(rerun.absolute())}


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("model.embedding_size=true", "model.embedding_size"),
        ("train.learning_rate=false", "train.learning_rate"),
        ("train.epochs=True", "train.epochs"),
        ("split.ratios=[true, 0.1, 0.1]", "split.ratios"),
        ("model.hidden_sizes=[64, true]", "model.hidden_sizes"),
    ],
)
def test_a_boolean_for_a_number_is_refused_naming_the_key(tmp_path, capsys, setting, key):
    """YAML reads true/on as booleans and pydantic took them for 1: ``embedding_size: true``
    trained a one-dimensional model."""
    from recsys.cli import main

    model = "twotower" if "hidden_sizes" in setting else "bpr"
    args = ["train", "--model", model, "--dataset", "synthetic-120x80x2400", "--no-tracking"]
    code = main([*args, "-o", str(tmp_path), "--quiet", "--set", setting])
    assert code == 2
    assert f"error: {key}: expected" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_booleans_stay_booleans_and_numbers_numbers():
    from recsys.models.registry import create_model

    model = create_model("bm3", train_features=False, embedding_size=8, dropout=0)
    assert model.config.train_features is False and model.config.embedding_size == 8
