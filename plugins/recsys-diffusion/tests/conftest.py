"""Pytest set-up of the diffusion plugin's tests."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``slow`` marker: the recsys repository's pytest configuration does, but a
    copy of the plugin run on its own (under ``--strict-markers`` too) has only this file."""
    config.addinivalue_line("markers", "slow: long-running tests (deselect with -m 'not slow')")
