import pytest

from recsys.models.registry import get_model_class, list_models
from recsys.testing import MODEL_CHECKS

MODELS = [info.name for info in list_models() if info.source == "builtin"]


def test_builtins_are_registered():
    assert {"pop", "itemknn", "bpr", "lightgcn"} <= set(MODELS)


@pytest.mark.parametrize("check", MODEL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", MODELS)
def test_model_conformance(name, check, planted_split):
    check(get_model_class(name), planted_split)
