"""Test helpers that plugin authors can reuse: the model conformance battery, the small split
it runs on, and a CLI check that a bad setting is refused as a one-line user error."""

from recsys.testing.cli import SMALL_DATA, check_bad_setting_refused
from recsys.testing.conformance import MODEL_CHECKS, check_model, small_split

__all__ = ["MODEL_CHECKS", "SMALL_DATA", "check_bad_setting_refused", "check_model", "small_split"]
