"""Where the shipped dataset cards and search spaces are.

They live at the top of the repository (``datasets/``, ``tune/spaces/``), which a checkout or
an editable install reads in place; a wheel carries copies inside the package
(``recsys/resources/<kind>/``, mapped in ``pyproject.toml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = {
    "datasets": (_PACKAGE.parent / "datasets", "ml-100k.yaml"),
    "spaces": (_PACKAGE.parent / "tune" / "spaces", "bpr.yaml"),
}


def resource_dir(kind: Literal["datasets", "spaces"]) -> Path:
    """The folder of the shipped dataset cards (``datasets``) or search spaces (``spaces``):
    the repository's when this package runs from a checkout, else the installed copy."""
    folder, marker = _CHECKOUT[kind]
    if (folder / marker).is_file():
        return folder
    return _PACKAGE / "resources" / kind
