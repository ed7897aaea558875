"""Search-space files: distributions, Ray samplers, and errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recsys.config import build_run_config
from recsys.errors import ConfigError
from recsys.tuning.space import (
    IntRange,
    PowersOfTwo,
    load_space,
    parse_space,
    set_dotted,
)

SPACES = Path(__file__).resolve().parents[2] / "tune" / "spaces"


def _base(model: str = "bpr") -> dict:
    return build_run_config(None, [], model={"name": model}).model_dump(mode="json")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_every_built_in_model_with_hyper_parameters_has_a_space():
    from recsys.models.registry import list_models

    builtins = {info.name for info in list_models() if info.source == "builtin"}
    shipped = {path.stem for path in SPACES.glob("*.yaml")}
    assert builtins - {"pop"} <= shipped


@pytest.mark.parametrize("model", ["bpr", "lightgcn", "itemknn", "bm3", "twotower", "dnis"])
def test_shipped_spaces_are_valid_for_their_models(model):
    space = load_space(SPACES / f"{model}.yaml", _base(model))
    assert space.params
    assert all(key.split(".")[0] in ("model", "train") for key in space.params)
    assert space.to_tune().keys() == space.params.keys()


def test_no_space_for_pop_and_pop_has_nothing_to_tune():
    assert not (SPACES / "pop.yaml").exists()
    with pytest.raises(ConfigError, match="nothing to tune"):
        parse_space({"params": {}}, _base("pop"), source="pop.yaml")


def test_every_type_becomes_the_right_ray_sampler():
    from ray.tune.search.sample import Categorical, Float, Integer

    space = parse_space(
        {
            "params": {
                "model.embedding_size": {"type": "pow2", "low": 16, "high": 128},
                "model.reg_weight": {"type": "choice", "values": [0.0, 1.0e-4]},
                "train.learning_rate": {"type": "loguniform", "low": 1.0e-4, "high": 0.1},
                "train.weight_decay": {"type": "uniform", "low": 0.0, "high": 0.1, "q": 0.01},
                "train.batch_size": {"type": "int", "low": 256, "high": 1024, "step": 256},
                "train.n_negatives": {"type": "int", "low": 1, "high": 4},
                "train.patience": {"type": "grid", "values": [5, 10]},
            }
        },
        _base(),
        source="s.yaml",
    )
    tuned = space.to_tune()
    assert isinstance(tuned["model.embedding_size"], Categorical)
    assert tuned["model.embedding_size"].categories == [16, 32, 64, 128]
    assert isinstance(tuned["train.learning_rate"], Float)
    assert isinstance(tuned["train.weight_decay"], Float)
    assert tuned["train.batch_size"].categories == [256, 512, 768, 1024]
    assert isinstance(tuned["train.n_negatives"], Integer)
    # Ray's randint excludes its upper bound; the file's bound is inclusive
    assert (tuned["train.n_negatives"].lower, tuned["train.n_negatives"].upper) == (1, 5)
    assert tuned["train.patience"] == {"grid_search": [5, 10]}
    assert space.grid_keys == ["train.patience"] and space.grid_size() == 2


def test_samples_stay_inside_the_declared_ranges():
    space = parse_space(
        {
            "params": {
                "train.n_negatives": {"type": "int", "low": 1, "high": 3},
                "train.learning_rate": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2},
                "model.embedding_size": {"type": "pow2", "low": 8, "high": 64, "grid": True},
            }
        }
    )
    tuned = space.to_tune()
    draws = tuned["train.n_negatives"].sample(size=300)
    assert set(draws) == {1, 2, 3}
    lrs = tuned["train.learning_rate"].sample(size=300)
    assert min(lrs) >= 1e-4 and max(lrs) <= 1e-2
    assert tuned["model.embedding_size"] == {"grid_search": [8, 16, 32, 64]}


def test_pow2_and_int_helpers():
    assert PowersOfTwo(type="pow2", low=4, high=4).values() == [4]
    assert PowersOfTwo(type="pow2", low=16, high=256).values() == [16, 32, 64, 128, 256]
    assert IntRange(type="int", low=2, high=8, step=3).candidates() == [2, 8]


def test_exponent_numbers_without_a_dot_are_numbers(tmp_path):
    # PyYAML reads 1e-4 as the string "1e-4"
    path = _write(
        tmp_path,
        "params:\n  train.learning_rate: {type: loguniform, low: 1e-4, high: 1e-2}\n"
        "  model.reg_weight: {type: choice, values: [0, 1e-5]}\nfixed:\n  train.epochs: 5\n",
    )
    space = load_space(path, _base())
    assert space.params["train.learning_rate"].low == pytest.approx(1e-4)
    assert space.params["model.reg_weight"].values == [0, 1e-5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params:\n  model.embeding_size: {type: choice, values: [8]}\n",
         "key model.embeding_size: model 'bpr' has no hyper-parameter 'embeding_size' "
         "(known: embedding_size, reg_weight)"),
        ("params:\n  model.embedding_size: {type: choice, values: [8, 0]}\n",
         "key model.embedding_size, value 0: model.embedding_size: Input should be greater "
         "than 0"),
        ("params:\n  model.embedding_size: {type: pow2, low: 12, high: 64}\n",
         "key model.embedding_size: low must be a power of two (got 12)"),
        ("params:\n  train.learning_rate: {type: uniform, low: 0.1, high: 0.01}\n",
         "key train.learning_rate: low must be < high"),
        ("params:\n  train.learning_rate: {type: loguniform, low: 0, high: 0.01}\n",
         "key train.learning_rate: low: Input should be greater than 0"),
        ("params:\n  train.learning_rate: {type: logscale, low: 1, high: 2}\n",
         "key train.learning_rate: unknown type 'logscale' (known: choice, grid, uniform, "
         "loguniform, int, pow2)"),
        ("params:\n  train.learning_rate: {low: 1, high: 2}\n",
         "key train.learning_rate: missing 'type'"),
        ("params:\n  train.learning_rate: {type: choice, value: [1]}\n",
         "key train.learning_rate: "),
        ("params:\n  train.learning_rate: 0.01\n",
         "key train.learning_rate: expected a mapping with a 'type'"),
        ("params:\n  train.optimizer: {type: choice, values: [adam, rmsprop]}\n",
         "key train.optimizer, value 'rmsprop': train.optimizer: Input should be"),
        ("params:\n  train.epochs: {type: choice, values: [5, 10]}\n",
         "key train.epochs is set by the tuner"),
        ("params:\n  split.seed: {type: choice, values: [1, 2]}\n",
         "key split.seed: only model.* and train.* keys can be tuned"),
        ("params:\n  learning_rate: {type: choice, values: [1]}\n",
         "params key 'learning_rate' must be a dotted config key"),
        ("params:\n  train.learning_rate: {type: int, low: 1, high: 10, step: 4}\n",
         "high - low must be a multiple of step"),
        ("param:\n  train.learning_rate: {type: choice, values: [1]}\n",
         "unknown top-level key(s) 'param' (known: fixed, params, points)"),
        ("params: {}\n", "'params' is empty"),
        ("params:\n  train.learning_rate: {type: choice, values: [0.1]}\npoints: {a: 1}\n",
         "'points' must be a list of configurations"),
        ("params:\n  train.learning_rate: {type: choice, values: [0.1]}\n"
         "points:\n  - {train.learning_rate: 0.1, model.reg_weight: 0.0}\n",
         "points[0]: key(s) model.reg_weight are not in 'params'"),
        ("params:\n  train.learning_rate: {type: choice, values: [0.1]}\n"
         "  model.reg_weight: {type: choice, values: [0.0]}\n"
         "points:\n  - {train.learning_rate: 0.1, model.reg_weight: 0.0}\n"
         "  - {train.learning_rate: 0.1}\n",
         "points[1]: no value for model.reg_weight"),
        ("params:\n  train.learning_rate: {type: choice, values: [0.1]}\n"
         "points:\n  - {train.learning_rate: -1}\n",
         "points[0]: train.learning_rate: Input should be greater than 0"),
        ("params:\n  train.learning_rate: {type: grid, values: [0.1]}\n"
         "points:\n  - {train.learning_rate: 0.1}\n",
         "'points' cannot be combined with grid axes (train.learning_rate)"),
        ("- a\n- b\n", "a search space must be a mapping"),
        ("fixed:\n  train.epochs: -1\nparams:\n  train.learning_rate: {type: grid, values: [1]}\n",
         "fixed values (train.epochs) are invalid: train.epochs: Input should be greater"),
        ("fixed:\n  train.learning_rate: 0.1\n"
         "params:\n  train.learning_rate: {type: grid, values: [1]}\n",
         "key train.learning_rate is both in 'fixed' and in 'params'"),
        # Ray's tune.quniform refuses bounds that are not multiples of q (it used to raise
        # inside Ray, after the experiment folder was written)
        ("params:\n  model.reg_weight: {type: uniform, low: 0.1, high: 0.5, q: 0.2}\n",
         "key model.reg_weight: low and high must be multiples of q (got low=0.1, high=0.5, "
         "q=0.2; low and high are not)"),
        ("params:\n  model.reg_weight: {type: uniform, low: 0.0, high: 0.1, q: 1.0}\n",
         "key model.reg_weight: low and high must be multiples of q (got low=0.0, high=0.1, "
         "q=1.0; high is not)"),
        # a key through a value that is not a section: the file is named like any other
        ("params:\n  model.embedding_size.foo: {type: choice, values: [16, 32]}\n",
         "key model.embedding_size.foo, value 16: model.embedding_size.foo: 'embedding_size' "
         "is not a section"),
    ],
)  # fmt: skip
def test_errors_name_the_file_and_the_key(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_space(path, _base())
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")
    path = _write(tmp_path, "params: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{path} is not valid YAML"):
        load_space(path)


def test_space_files_are_read_as_config_files_are(tmp_path):
    """The config files' YAML reader: a key given twice is an error (YAML 1.1 kept the last
    silently), errors are one line, and values mean the same as in a config file."""
    path = _write(
        tmp_path,
        "params:\n"
        "  train.learning_rate: {type: loguniform, low: 1e-4, high: 3e-2}\n"
        "  train.learning_rate: {type: choice, values: [0.1]}\n",
    )
    with pytest.raises(ConfigError, match=r"key 'train.learning_rate' is given twice \(line 3"):
        load_space(path)
    path = _write(
        tmp_path, "params:\n  train.learning_rate: {type: choice, values: [1e-3, 2e-3]}\n"
    )
    assert load_space(path).params["train.learning_rate"].values == [1e-3, 2e-3]  # not text
    path = _write(tmp_path, "params: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert "\n" not in str(info.value)


def test_without_a_base_only_the_file_itself_is_checked():
    space = parse_space({"params": {"model.anything": {"type": "choice", "values": [1]}}})
    assert list(space.params) == ["model.anything"]


def test_as_dict_round_trips():
    raw = yaml.safe_load((SPACES / "bpr.yaml").read_text())
    space = parse_space(raw, _base())
    again = parse_space(space.as_dict(), _base())
    assert again.params == space.params and again.fixed == space.fixed


def test_set_dotted_creates_sections_and_refuses_to_replace_values():
    values = {"train": {"epochs": 3}}
    set_dotted(values, "train.learning_rate", 0.1)
    set_dotted(values, "model.name", "bpr")
    assert values == {"train": {"epochs": 3, "learning_rate": 0.1}, "model": {"name": "bpr"}}
    with pytest.raises(ConfigError, match="'epochs' is not a section"):
        set_dotted(values, "train.epochs.x", 1)


def test_a_q_that_divides_both_bounds_is_accepted_as_ray_accepts_it():
    # 0.5 / 0.1 is 4.999...: Ray compares with math.isclose, and so does the space
    space = parse_space(
        {"params": {"model.reg_weight": {"type": "uniform", "low": 0.0, "high": 0.5, "q": 0.1}}},
        _base(),
    )
    draws = space.to_tune()["model.reg_weight"].sample(size=50)
    assert all(0.0 <= d <= 0.5 for d in draws)


def test_check_configurations_combine_every_candidate_then_the_points():
    space = parse_space(
        {
            "params": {
                "model.embedding_size": {"type": "pow2", "low": 16, "high": 32},
                "train.learning_rate": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2},
                "model.reg_weight": {"type": "choice", "values": [0.0, 0.0, 1.0e-4]},
            },
            "points": [
                {"model.embedding_size": 64, "train.learning_rate": 0.5, "model.reg_weight": 1}
            ],
        }
    )
    configurations = space.check_configurations()
    # 2 sizes x both ends of the range x 2 distinct weights, then the point
    assert len(configurations) == 2 * 2 * 2 + 1
    assert {"model.embedding_size": 32, "train.learning_rate": 1.0e-2,
            "model.reg_weight": 1.0e-4} in configurations  # fmt: skip
    assert configurations[-1] == space.points[0]


def test_check_configurations_of_a_large_space_are_a_seeded_sample():
    space = parse_space(
        {"params": {f"model.k{i}": {"type": "choice", "values": list(range(10))} for i in range(4)}}
    )
    drawn = space.check_configurations(limit=50, seed=3)
    assert len(drawn) == 50 and len({tuple(c.values()) for c in drawn}) == 50
    assert drawn == space.check_configurations(limit=50, seed=3)
    assert all(set(c) == set(space.params) for c in drawn)
