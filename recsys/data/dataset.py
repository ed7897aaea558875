"""The in-memory dataset: id maps, interactions as CSR, and named feature tables.

This is the single representation between the readers and the splitters. Readers build it with
:meth:`Dataset.from_arrays`; everything downstream reads its CSR matrix and the arrays aligned
with the matrix's stored entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from recsys.errors import DataError

FeatureKind = Literal["dense", "multi_hot", "categorical"]


class Vocabulary:
    """A bijection between raw ids (strings) and contiguous indices ``0..n-1``.

    Args:
        ids (Sequence[str]): raw ids in index order; must be unique.
        name (str): what the ids are ("user", "item"), used in error messages.
    """

    def __init__(self, ids: Sequence[str] | np.ndarray, name: str = "id") -> None:
        self.ids = np.asarray([str(x) for x in ids], dtype=object)
        self.name = name
        self._index = {raw: i for i, raw in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise DataError(f"{name} vocabulary has duplicate ids")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Vocabulary(name={self.name!r}, size={len(self)})"

    def __contains__(self, raw: object) -> bool:
        return str(raw) in self._index

    def index(self, raw: Iterable[object]) -> np.ndarray:
        """Indices of raw ids; an unknown id raises :class:`DataError` naming it."""
        out = []
        for r in raw:
            key = str(r)
            if key not in self._index:
                raise DataError(f"unknown {self.name} id {key!r}")
            out.append(self._index[key])
        return np.asarray(out, dtype=np.int64)

    def raw(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        """Raw ids of indices."""
        return self.ids[np.asarray(index, dtype=np.int64)]


@dataclass
class FeatureTable:
    """A named feature matrix with one row per user or item.

    Attributes:
        name: the feature's name (``"genre"``, ``"text"``, ``"year"``).
        kind: ``"dense"`` (float rows, e.g. text embeddings), ``"multi_hot"`` (a CSR 0/1
            matrix over ``vocab``), or ``"categorical"`` (one integer code per row into ``vocab``,
            -1 for missing).
        values: ``np.ndarray`` for dense and categorical, ``scipy.sparse.csr_array`` for
            multi-hot.
        vocab: the token for each column (multi-hot) or code (categorical).
    """

    name: str
    kind: FeatureKind
    values: np.ndarray | sp.csr_array
    vocab: list[str] | None = None

    @property
    def n_rows(self) -> int:
        return self.values.shape[0]

    def validate(self, n_rows: int, owner: str) -> None:
        """Check row count and finiteness; raise :class:`DataError` naming the feature and row."""
        if self.n_rows != n_rows:
            raise DataError(
                f"{owner} feature {self.name!r} has {self.n_rows} rows, expected {n_rows}"
            )
        if self.kind == "dense":
            values = np.asarray(self.values)
            bad = ~np.isfinite(values)
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise DataError(
                    f"{owner} feature {self.name!r} has a NaN or infinite value in row {row}"
                )

    def dense(self) -> np.ndarray:
        """The feature as a dense float32 matrix (one-hot for categorical)."""
        if self.kind == "dense":
            return np.asarray(self.values, dtype=np.float32)
        if self.kind == "multi_hot":
            return np.asarray(self.values.todense(), dtype=np.float32)
        codes = np.asarray(self.values)
        out = np.zeros((len(codes), len(self.vocab or [])), dtype=np.float32)
        known = codes >= 0
        out[np.flatnonzero(known), codes[known]] = 1.0
        return out


@dataclass
class Dataset:
    """Users, items, their interactions and features.

    ``interactions`` is a binary ``n_users x n_items`` CSR matrix in canonical form (sorted
    column indices, no duplicates). ``ratings``, ``timestamps`` and ``split_labels`` are optional
    arrays aligned with ``interactions.data`` (CSR order). ``split_labels`` holds a published
    split (0 train, 1 valid, 2 test) for datasets that come pre-split.
    """

    name: str
    users: Vocabulary
    items: Vocabulary
    interactions: sp.csr_array
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    split_labels: np.ndarray | None = None
    item_features: dict[str, FeatureTable] = field(default_factory=dict)
    user_features: dict[str, FeatureTable] = field(default_factory=dict)
    source: str = ""
    default_split: dict[str, Any] | None = None
    """The dataset card's default split (``strategy``, ``ratios``), when a card named it; a
    run's ``split`` section overrides it (:func:`recsys.data.split.split_dataset`)."""
    cache_dir: str | None = None
    """The cache root it was loaded with (``data.cache_dir``), where derived item features
    (encoded text) are cached too; None: ``$RECSYS_DATA_DIR`` or the default."""

    SPLIT_TRAIN = 0
    SPLIT_VALID = 1
    SPLIT_TEST = 2

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return int(self.interactions.nnz)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"interactions={self.n_interactions})"
        )

    def validate(self) -> None:
        """Check shapes and alignment of every part; raise :class:`DataError` on mismatch."""
        m = self.interactions
        if m.shape != (self.n_users, self.n_items):
            raise DataError(
                f"{self.name}: interaction matrix shape {m.shape} does not match "
                f"{self.n_users} users x {self.n_items} items"
            )
        for attr in ("ratings", "timestamps", "split_labels"):
            arr = getattr(self, attr)
            if arr is not None and len(arr) != m.nnz:
                raise DataError(
                    f"{self.name}: {attr} has {len(arr)} values for {m.nnz} interactions"
                )
        for table in self.item_features.values():
            table.validate(self.n_items, f"{self.name}: item")
        for table in self.user_features.values():
            table.validate(self.n_users, f"{self.name}: user")

    def coo(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) index arrays in CSR order."""
        m = self.interactions
        users = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        return users, m.indices.astype(np.int64)

    @classmethod
    def from_arrays(
        cls,
        name: str,
        users: Vocabulary,
        items: Vocabulary,
        user_index: np.ndarray,
        item_index: np.ndarray,
        *,
        ratings: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        split_labels: np.ndarray | None = None,
        item_features: dict[str, FeatureTable] | None = None,
        user_features: dict[str, FeatureTable] | None = None,
        source: str = "",
    ) -> Dataset:
        """Build a dataset from interaction index arrays.

        Duplicate (user, item) pairs keep their last occurrence in input order (the latest
        rating, the latest timestamp). Use :func:`recsys.data.preprocess` for other policies.
        """
        user_index = np.asarray(user_index, dtype=np.int64)
        item_index = np.asarray(item_index, dtype=np.int64)
        n_users, n_items = len(users), len(items)
        if len(user_index) != len(item_index):
            raise DataError(f"{name}: user and item index arrays differ in length")
        if len(user_index) and (user_index.min() < 0 or user_index.max() >= n_users):
            raise DataError(f"{name}: user index out of range")
        if len(item_index) and (item_index.min() < 0 or item_index.max() >= n_items):
            raise DataError(f"{name}: item index out of range")
        key = user_index * n_items + item_index
        # stable sort by key, then keep the last of each run of equal keys
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        last = np.ones(len(order), dtype=bool)
        if len(order):
            last[:-1] = sorted_key[1:] != sorted_key[:-1]
        keep = order[last]
        u, i = user_index[keep], item_index[keep]
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(u, minlength=n_users), out=indptr[1:])
        matrix = sp.csr_array(
            (np.ones(len(keep), dtype=np.float32), i.astype(np.int32), indptr),
            shape=(n_users, n_items),
        )

        def aligned(arr: np.ndarray | None, dtype: type) -> np.ndarray | None:
            return None if arr is None else np.asarray(arr, dtype=dtype)[keep]

        if ratings is not None:
            # ratings are stored as float32: a finite value beyond its range would become inf
            wide = np.asarray(ratings, dtype=np.float64)
            over = np.abs(wide) > np.finfo(np.float32).max
            if over.any():
                k = int(np.argmax(over))
                raise DataError(
                    f"{name}: interaction {k + 1} has rating {wide[k]:g}, which overflows float32"
                )

        return cls(
            name=name,
            users=users,
            items=items,
            interactions=matrix,
            ratings=aligned(ratings, np.float32),
            timestamps=aligned(timestamps, np.float64),
            split_labels=aligned(split_labels, np.int8),
            item_features=dict(item_features or {}),
            user_features=dict(user_features or {}),
            source=source,
        )

    def subset(self, mask: np.ndarray, name: str | None = None) -> Dataset:
        """Keep the interactions where ``mask`` (aligned with CSR order) is true.

        Users and items with no interaction left are dropped, and feature rows with them.
        """
        users, items = self.coo()
        users, items = users[mask], items[mask]
        keep_users = np.unique(users)
        keep_items = np.unique(items)
        user_map = np.full(self.n_users, -1, dtype=np.int64)
        user_map[keep_users] = np.arange(len(keep_users))
        item_map = np.full(self.n_items, -1, dtype=np.int64)
        item_map[keep_items] = np.arange(len(keep_items))

        def take(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else arr[mask]

        def rows(tables: dict[str, FeatureTable], keep: np.ndarray) -> dict[str, FeatureTable]:
            return {
                k: FeatureTable(t.name, t.kind, t.values[keep], t.vocab) for k, t in tables.items()
            }

        return Dataset.from_arrays(
            name or self.name,
            Vocabulary(self.users.ids[keep_users], "user"),
            Vocabulary(self.items.ids[keep_items], "item"),
            user_map[users],
            item_map[items],
            ratings=take(self.ratings),
            timestamps=take(self.timestamps),
            split_labels=take(self.split_labels),
            item_features=rows(self.item_features, keep_items),
            user_features=rows(self.user_features, keep_users),
            source=self.source,
        )

    def stats(self) -> dict[str, float]:
        """Summary numbers: sizes, density, interactions per user and per item."""
        per_user = np.diff(self.interactions.indptr)
        per_item = np.bincount(self.interactions.indices, minlength=self.n_items)
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "density": self.n_interactions / max(1, self.n_users * self.n_items),
            "min_per_user": int(per_user.min()) if self.n_users else 0,
            "median_per_user": float(np.median(per_user)) if self.n_users else 0.0,
            "max_per_user": int(per_user.max()) if self.n_users else 0,
            "min_per_item": int(per_item.min()) if self.n_items else 0,
            "median_per_item": float(np.median(per_item)) if self.n_items else 0.0,
            "max_per_item": int(per_item.max()) if self.n_items else 0,
            "has_ratings": self.ratings is not None,
            "has_timestamps": self.timestamps is not None,
            "item_features": ",".join(sorted(self.item_features)),
            "user_features": ",".join(sorted(self.user_features)),
        }
