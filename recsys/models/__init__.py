"""Models: the Recommender contract, the registry, and the built-in baselines."""

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
