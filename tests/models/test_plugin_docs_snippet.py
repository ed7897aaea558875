"""The plugin guide's code works as written: its conformance snippet (the same as in
``recsys/testing/conformance.py``'s docstring) runs here on a tiny model defined in this file,
its example model passes every check, and its example search space is valid."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import recsys.testing.conformance as conformance
from recsys.config import load_yaml
from recsys.models.base import ModelConfig, Recommender, ScoreFn
from recsys.testing import MODEL_CHECKS, small_split
from recsys.tuning.space import parse_space

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


class MyModelConfig(ModelConfig):
    pass


class MyModel(Recommender):
    """A tiny model: one learned score per item."""

    name = "mymodel"
    config_class = MyModelConfig
    batch_kind = "pairwise"

    def build(self, train: sp.csr_array, dataset: object) -> None:
        self.bias = nn.Parameter(torch.empty(self.n_items))

    def reset_parameters(self) -> None:
        nn.init.normal_(self.bias, std=0.1)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pos, neg = self.bias[batch["pos"]], self.bias[batch["neg"]]
        if neg.dim() == 2:
            pos = pos.unsqueeze(1)
        return {"bpr": -F.logsigmoid(pos - neg).mean()}

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        return lambda users: self.bias.expand(len(users), -1).clone()


# -- the snippet, as docs/plugins.md gives it (its import of MyModel aside) ------------------
@pytest.mark.parametrize("check", MODEL_CHECKS, ids=lambda c: c.__name__)
def test_conformance(check):
    check(MyModel, small_split())


# -- the guide and this file agree ------------------------------------------------------------
def _tested_blocks() -> list[str]:
    """The code blocks of the guide that follow a ``<!-- ... is tested ... -->`` comment."""
    text = GUIDE.read_text(encoding="utf-8")
    return re.findall(r"<!-- [^>]*is tested[^>]*-->\n```python\n(.*?)```", text, re.S)


def _code_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def test_the_guide_and_the_conformance_docstring_show_this_snippet():
    blocks = _tested_blocks()
    assert len(blocks) == 2
    own_import = "from recsys_mymodel.model import MyModel"
    snippet = [line for line in _code_lines(blocks[1]) if line != own_import]
    source = _code_lines(Path(__file__).read_text(encoding="utf-8"))
    docstring = [line.strip() for line in _code_lines(conformance.__doc__ or "")]
    for line in snippet:
        assert line in source, f"{line!r} of the guide's snippet is not tested here"
        assert line.strip() in docstring, f"{line!r} is not in conformance.py's docstring"


def test_the_guides_example_model_passes_every_check(monkeypatch):
    module = types.ModuleType("recsys_mymodel_guide")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(_tested_blocks()[0], str(GUIDE), "exec"), module.__dict__)
    model = module.MyModel
    assert model.name == "mymodel"
    conformance.check_model(model)  # on small_split()
    conformance.check_model(model, small_split(seed=3))


def test_the_guides_search_space_is_valid():
    text = GUIDE.read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# recsys_mymodel/spaces/mymodel.yaml.*?)```", text, re.S)
    assert block is not None
    space = parse_space(load_yaml(block.group(1)), source="docs/plugins.md")
    assert "model.embedding_size" in space.params
