"""Exceptions raised for bad input.

Every error a user can cause names what was wrong and where: the file, the row, the field or
the configuration key. The CLI turns these into a one-line message and exit status 2.
"""

from __future__ import annotations


class RecsysError(Exception):
    """Base class for errors caused by the user's input or environment."""


class DataError(RecsysError, ValueError):
    """A data file or in-memory table is malformed (names the file, row and field)."""


class ConfigError(RecsysError, ValueError):
    """A configuration value or key is invalid (names the key)."""


class DatasetNotFoundError(RecsysError, LookupError):
    """A dataset name is unknown or its files cannot be found or fetched."""


class TrainingDivergedError(RecsysError, FloatingPointError):
    """A training loss became infinite or NaN: a setting (usually the learning rate) is too
    large for the data, or the data holds extreme values. Names the settings to change."""


class NonFiniteScoresError(RecsysError, ValueError):
    """A model scored NaN: its weights diverged in training or a checkpoint holds NaN."""


class NotFittedError(RecsysError, RuntimeError):
    """A model was asked to score before it was set up or trained."""


class TrackingError(RecsysError, RuntimeError):
    """The experiment tracker (MLflow) cannot be reached or refused a write."""
