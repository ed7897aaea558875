"""Shared fixtures: tiny synthetic datasets and splits, an isolated environment per test."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.dataset import Dataset, Vocabulary
from recsys.data.split import Split, split_ratio
from recsys.data.synthetic import make_synthetic
from tests.mlflow_server import mlflow_server  # noqa: F401  (fixture)


@contextlib.contextmanager
def umask_set(value: int) -> Iterator[None]:
    """Run the block under this umask (restored afterwards)."""
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(params=[0o022, 0o077], ids=lambda m: f"umask{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The test runs under each of two umasks (restored afterwards)."""
    with umask_set(request.param):
        yield request.param


def strict_loads(text: str) -> object:
    """``json.loads`` that refuses NaN, Infinity and -Infinity, as jq and JavaScript do."""
    return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def file_mode(path: Path) -> int:
    """Permission bits of ``path``."""
    return path.stat().st_mode & 0o777


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No test reads the user's caches, tracking server or plugins by accident."""
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("data-cache")))
    monkeypatch.delenv("RECSYS_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def planted() -> Dataset:
    """A planted-factor dataset: 300 users, 200 items, 9000 interactions, power-law items."""
    return make_synthetic(300, 200, 9000, temperature=0.25, seed=7)


@pytest.fixture(scope="session")
def planted_split(planted: Dataset) -> Split:
    return split_ratio(planted, (0.8, 0.1, 0.1), seed=1)


def grid_dataset(
    n_users: int = 3, n_items: int = 10, timestamps: np.ndarray | None = None
) -> Dataset:
    """Every one of ``n_users`` users has every one of ``n_items`` items (a full grid)."""
    users = np.repeat(np.arange(n_users), n_items)
    items = np.tile(np.arange(n_items), n_users)
    return Dataset.from_arrays(
        "grid",
        Vocabulary([f"u{u}" for u in range(n_users)], "user"),
        Vocabulary([f"i{i}" for i in range(n_items)], "item"),
        users,
        items,
        timestamps=timestamps,
    )


def tiny_dataset() -> Dataset:
    """4 users x 6 items, hand-made, with ratings and timestamps."""
    users = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    items = np.array([0, 1, 2, 3, 4, 1, 2, 5, 0, 2, 4, 5, 3, 4, 5])
    ratings = np.array([5, 4, 3, 2, 1, 5, 5, 1, 4, 4, 4, 4, 3, 2, 1], dtype=float)
    timestamps = np.arange(len(users), dtype=float)
    return Dataset.from_arrays(
        "tiny",
        Vocabulary([f"u{i}" for i in range(4)], "user"),
        Vocabulary([f"i{i}" for i in range(6)], "item"),
        users,
        items,
        ratings=ratings,
        timestamps=timestamps,
    )


@pytest.fixture
def tiny() -> Dataset:
    return tiny_dataset()


def csr(rows: list[list[int]], n_items: int) -> sp.csr_array:
    """A binary CSR matrix from per-row item lists."""
    r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    c = np.concatenate([np.asarray(x, dtype=np.int64) for x in rows]) if rows else np.array([])
    return sp.csr_array((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(rows), n_items))
