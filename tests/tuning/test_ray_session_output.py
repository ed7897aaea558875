"""A local Ray started for an experiment does not print Ray's notice that it enabled token
authentication by default (a warning on every `recsys tune`); Ray's other warnings still do."""

from __future__ import annotations

import logging

import pytest

ray = pytest.importorskip("ray")

from recsys.tuning.driver import ray_session  # noqa: E402

NOTICE = "Token authentication is enabled for this Ray cluster"
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def test_the_default_auth_notice_is_not_printed(caplog, capfd):
    if ray.is_initialized():  # pragma: no cover - another test left one running
        ray.shutdown()
    with caplog.at_level(logging.WARNING), ray_session(None, quiet=True) as info:
        assert info
        # the filter is gone once Ray has started: later messages of that logger pass
        logging.getLogger(AUTH_LOGGER).warning("a later warning")
    assert not ray.is_initialized()
    printed = capfd.readouterr()
    assert NOTICE not in printed.out + printed.err
    assert NOTICE not in caplog.text
    assert "a later warning" in caplog.text
