"""Checkpoint files: state dicts plus plain metadata, written atomically, read weights-only.

A checkpoint is one ``.pt`` file holding a dict of tensors, numbers and strings, so
``torch.load(..., weights_only=True)`` reads it back. It is written to a temporary file in the
same folder and moved into place with ``os.replace``, so a crash mid-write never leaves a
half-written checkpoint where a good one was.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.errors import DataError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Save ``payload`` (tensors, numbers, strings, nested dicts/lists) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights-only unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # torch's own text runs to many lines (and suggests an unsafe load); its first line
        # says enough
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
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
