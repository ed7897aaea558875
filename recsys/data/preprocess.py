"""Interaction filters applied between reading and splitting.

The order is fixed, as in RecBole: duplicates are resolved while reading (:func:`deduplicate`
gives the rows to keep; readers take ``keep="last"|"first"``), then ratings are thresholded
(:func:`binarize`), then users and items with too few interactions are removed until none is
left (:func:`kcore`). :func:`preprocess` runs the last two from a config. Every filter that
removes all interactions raises :class:`~recsys.errors.DataError` naming the filter.
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recsys.data.dataset import Dataset
from recsys.errors import DataError

__all__ = [
    "PreprocessConfig",
    "binarize",
    "deduplicate",
    "kcore",
    "kcore_mask",
    "preprocess",
]


class PreprocessOptions(Protocol):
    """Anything with these attributes can drive :func:`preprocess` (e.g. ``DataConfig``)."""

    rating_threshold: float | None
    min_user_interactions: int
    min_item_interactions: int


class PreprocessConfig(BaseModel):
    """Filters to apply after reading, in order: rating threshold, then k-core."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    rating_threshold: float | None = None
    """Keep interactions with ``rating >= rating_threshold``; ``None`` keeps all."""
    min_user_interactions: int = Field(0, ge=0)
    """Drop users with fewer interactions (repeated with the item filter to a fixed point)."""
    min_item_interactions: int = Field(0, ge=0)
    """Drop items with fewer interactions (repeated with the user filter to a fixed point)."""


def deduplicate(
    user_index: np.ndarray, item_index: np.ndarray, keep: Literal["last", "first"] = "last"
) -> np.ndarray:
    """Positions of the rows to keep so that each (user, item) pair occurs once.

    A built :class:`Dataset` never holds duplicates (:meth:`Dataset.from_arrays` keeps the
    last occurrence), so the policy applies to raw rows before a dataset is built; readers take
    the same ``keep`` argument. The result is sorted, i.e. in input order.

    Args:
        user_index: user index of every row, in file order.
        item_index: item index of every row, in file order.
        keep: ``"last"`` keeps the latest row of each pair in file order, ``"first"`` the
            earliest.
    """
    if keep not in ("last", "first"):
        raise DataError(f"dedup keep must be 'last' or 'first', got {keep!r}")
    users = np.asarray(user_index, dtype=np.int64)
    items = np.asarray(item_index, dtype=np.int64)
    if len(users) != len(items):
        raise DataError("deduplicate: user and item index arrays differ in length")
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    n_items = int(items.max()) + 1
    key = users * n_items + items
    if keep == "last":
        key = key[::-1]
    _, first_pos = np.unique(key, return_index=True)
    if keep == "last":
        first_pos = len(users) - 1 - first_pos
    return np.sort(first_pos)


def binarize(ds: Dataset, threshold: float) -> Dataset:
    """Keep interactions with ``rating >= threshold`` (ratings are kept on the result).

    Raises:
        DataError: when ``ds`` has no ratings, or when no interaction passes.
    """
    if ds.ratings is None:
        raise DataError(
            f"{ds.name}: rating_threshold={threshold:g} needs ratings, but the dataset has none"
        )
    mask = ds.ratings >= threshold
    if not mask.any():
        low, high = float(ds.ratings.min()), float(ds.ratings.max())
        raise DataError(
            f"{ds.name}: rating_threshold={threshold:g} removed every interaction "
            f"(ratings range from {low:g} to {high:g})"
        )
    if mask.all():
        return ds
    return ds.subset(mask)


def kcore_mask(ds: Dataset, min_user: int, min_item: int) -> np.ndarray:
    """Boolean mask (CSR order) of the interactions that survive the k-core filter.

    Users with fewer than ``min_user`` and items with fewer than ``min_item`` remaining
    interactions are removed together in each round, until a round removes nothing (RecBole's
    ``_filter_by_inter_num``). Each round is two ``np.bincount`` calls.
    """
    users, items = ds.coo()
    alive = np.ones(len(users), dtype=bool)
    if min_user <= 1 and min_item <= 1:
        return alive
    while True:
        user_count = np.bincount(users[alive], minlength=ds.n_users)
        item_count = np.bincount(items[alive], minlength=ds.n_items)
        ok = alive & (user_count[users] >= min_user) & (item_count[items] >= min_item)
        if ok.sum() == alive.sum():
            return ok
        alive = ok


def kcore(ds: Dataset, min_user: int = 0, min_item: int = 0) -> Dataset:
    """Drop users and items with too few interactions, repeatedly, to a fixed point.

    Raises:
        DataError: when nothing is left.
    """
    if min_user < 0 or min_item < 0:
        raise DataError(f"k-core bounds must be >= 0, got min_user={min_user}, min_item={min_item}")
    mask = kcore_mask(ds, min_user, min_item)
    if not mask.any():
        raise DataError(
            f"{ds.name}: the k-core filter (min_user_interactions={min_user}, "
            f"min_item_interactions={min_item}) removed every interaction"
        )
    if mask.all():
        return ds
    return ds.subset(mask)


def preprocess(ds: Dataset, cfg: PreprocessOptions | PreprocessConfig) -> Dataset:
    """Apply the rating threshold, then the k-core filter, as ``cfg`` asks.

    ``cfg`` is a :class:`PreprocessConfig` or any object with the same attributes, such as
    :class:`recsys.data.catalog.DataConfig` (there ``rating_threshold=None`` means "the card's
    default"; :func:`recsys.data.catalog.load_dataset` resolves that before calling here).
    """
    if ds.n_interactions == 0:
        raise DataError(f"{ds.name}: the dataset has no interactions")
    if cfg.rating_threshold is not None:
        ds = binarize(ds, float(cfg.rating_threshold))
    if cfg.min_user_interactions > 1 or cfg.min_item_interactions > 1:
        ds = kcore(ds, int(cfg.min_user_interactions), int(cfg.min_item_interactions))
    return ds
