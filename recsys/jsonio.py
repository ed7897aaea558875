"""Strict JSON: what the package writes (run files, reports, ``--json`` output) is valid JSON
that any parser reads (jq, JavaScript), never Python's ``NaN`` or ``Infinity``.

A metric with nothing to average over (an empty slice) is NaN; it is written as ``null``.
Code reading such a file back treats ``None`` as a missing value (:func:`nan_for_none`
turns the ``null`` numbers of a metrics dict back into NaN).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["dumps_json", "nan_for_none", "plain"]


def plain(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars and arrays to Python, NaN and infinities to None."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps_json(obj: Any, *, default: Callable[[Any], Any] | None = None, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`plain` ``(obj)``, strict (``allow_nan=False``).

    ``default`` converts what JSON has no type for, as for ``json.dumps``; its result goes
    through :func:`plain` too (``default=float`` of a NaN tensor is ``null``). Other keyword
    arguments (``indent``, ``sort_keys``, ``ensure_ascii``) are passed on; key order is kept.
    """
    strict_default = None
    if default is not None:
        convert = default

        def strict_default(value: Any) -> Any:
            return plain(convert(value))

    return json.dumps(plain(obj), allow_nan=False, default=strict_default, **kwargs)


def nan_for_none(values: dict[str, Any]) -> dict[str, Any]:
    """A metrics dict read back from JSON with its ``null`` values as NaN (a copy)."""
    return {key: math.nan if value is None else value for key, value in values.items()}
