"""Data shared by the denoising plugin's tests."""

import pytest

from recsys.data.split import split_ratio
from recsys.data.synthetic import make_synthetic


def pytest_configure(config):
    """Register the ``slow`` marker: the recsys repository's pytest configuration does, but a
    copy of the plugin run on its own (under ``--strict-markers`` too) has only this file."""
    config.addinivalue_line("markers", "slow: long-running tests (deselect with -m 'not slow')")


@pytest.fixture(scope="module")
def noisy():
    """300 users x 200 items, 20% of the interactions replaced by random items (rating 0)."""
    return make_synthetic(300, 200, 9000, temperature=0.25, label_noise=0.2, seed=7)


@pytest.fixture(scope="module")
def noisy_split(noisy):
    return split_ratio(noisy, (0.8, 0.1, 0.1), seed=1)
