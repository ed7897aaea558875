"""Test helpers that plugin authors can reuse: the model conformance battery."""

from recsys.testing.conformance import MODEL_CHECKS, check_model

__all__ = ["MODEL_CHECKS", "check_model"]
