"""Fixtures of the recsys-vae tests: small planted-factor data and an isolated environment."""

from __future__ import annotations

import pytest
import torch

from recsys.data.dataset import Dataset
from recsys.data.split import Split, split_ratio
from recsys.data.synthetic import make_synthetic


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``slow`` marker: the recsys repository's pytest configuration does, but a
    copy of the plugin run on its own (under ``--strict-markers`` too) has only this file."""
    config.addinivalue_line("markers", "slow: long-running tests (deselect with -m 'not slow')")


@pytest.fixture(autouse=True)
def _vae_isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No test reads the user's caches or tracking server; one torch thread (shared CPUs)."""
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("data-cache")))
    monkeypatch.delenv("RECSYS_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def vae_planted() -> Dataset:
    """300 users x 200 items, 9000 interactions from 8 planted factors."""
    return make_synthetic(300, 200, 9000, temperature=0.25, seed=7, modalities={}, genres=False)


@pytest.fixture(scope="session")
def vae_split(vae_planted: Dataset) -> Split:
    return split_ratio(vae_planted, (0.8, 0.1, 0.1), seed=1)
