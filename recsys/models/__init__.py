"""Models: the Recommender contract, the registry, and the built-in baselines."""

# importing DNIS registers the built-in ``dnis`` (it wraps the other models)
from recsys.models import dnis as _dnis  # noqa: F401
from recsys.models.base import ModelConfig, Recommender
from recsys.models.registry import create_model, get_model_class, list_models, register

__all__ = [
    "ModelConfig",
    "Recommender",
    "create_model",
    "get_model_class",
    "list_models",
    "register",
]
