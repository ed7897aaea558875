"""Checkpoint files: state dicts plus plain metadata, written atomically, read weights-only.

A checkpoint is one ``.pt`` file holding a dict of tensors, numbers and strings, so
``torch.load(..., weights_only=True)`` reads it back. It is written to a temporary file in the
same folder and moved into place with ``os.replace`` (:mod:`recsys.fileio`), so a crash
mid-write never leaves a half-written checkpoint where a good one was.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.errors import DataError

# atomic_write_bytes and atomic_write_text live in recsys.fileio (no torch import); they are
# re-exported here, where many modules and plugins import them from
from recsys.fileio import atomic_path, atomic_write_bytes, atomic_write_text  # noqa: F401


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Save ``payload`` (tensors, numbers, strings, nested dicts/lists) atomically."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights-only unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # torch's own text runs to many lines and, for a file that is no weights-only pickle,
        # advises loading with weights_only=False: an unsafe load, and no help for a corrupt
        # file. Its first sentence says enough
        text = str(exc).strip()
        reason = re.split(r"(?<=\.)\s|\n", text, maxsplit=1)[0].rstrip(".") if text else ""
        if not reason or "weights_only" in reason:
            reason = type(exc).__name__
        raise DataError(
            f"checkpoint {path} cannot be read (corrupt, truncated or not a recsys "
            f"checkpoint): {reason}"
        ) from exc


def load_weights(model: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """``model.load_state_dict(state["model"])``, with a :class:`DataError` naming ``path``
    when the checkpoint holds no weights or weights of another model or shape."""
    if "model" not in state:
        raise DataError(f"checkpoint {path} holds no model weights ('model' key)")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        details = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        raise DataError(
            f"checkpoint {path} does not fit the {type(model).__name__} model its run config "
            f"builds (was the config edited, or the data changed?): "
            + ("; ".join(details[:2]) or str(exc))
        ) from exc


def rng_state(rng: np.random.Generator) -> str:
    """A numpy generator's state as JSON (its 128-bit integers survive weights-only loads)."""
    return json.dumps(rng.bit_generator.state)


def restore_rng(rng: np.random.Generator, state: str) -> None:
    rng.bit_generator.state = json.loads(state)
