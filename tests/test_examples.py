"""Every example config validates, and the quick one trains."""

from pathlib import Path

import pytest

from recsys.config import build_run_config

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_validates(path):
    cfg = build_run_config(path)
    assert cfg.model["name"]


@pytest.mark.parametrize("model", ["lightgcn", "bm3"])
def test_the_python_api_quickstart_trains_tests_and_recommends(model, capsys):
    import importlib.util

    path = Path(__file__).parents[1] / "examples" / "api_quickstart.py"
    spec = importlib.util.spec_from_file_location("api_quickstart", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    test, top = example.run("synthetic-120x80x2400", model, epochs=3)
    assert 0 < test["recall_at_20"] <= 1 and "ndcg_at_10" in test
    assert list(top.columns) == ["user", "item", "rank", "score"]
    assert len(top) == 120 * 5 and set(top["rank"]) == {1, 2, 3, 4, 5}
    assert "best epoch" in capsys.readouterr().out
