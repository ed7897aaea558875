"""Reading checkpoint files: an unreadable one is a short DataError, with no unsafe advice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.errors import DataError
from recsys.train.checkpoint import load_checkpoint, save_checkpoint


def _damaged(tmp_path, how: str):
    path = tmp_path / "best.pt"
    if how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        save_checkpoint(path, {"model": {"w": torch.zeros(128, 128)}})
        raw = path.read_bytes()
        path.write_bytes(raw[:1000])  # the zip central directory is lost
    return path


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_an_unreadable_checkpoint_keeps_the_projects_message_only(tmp_path, how):
    path = _damaged(tmp_path, how)
    with pytest.raises(DataError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(
        f"checkpoint {path} cannot be read (corrupt, truncated or not a recsys checkpoint): "
    )
    # before: torch's advice to load with weights_only=False (arbitrary code execution) for
    # random bytes, and a ~450-character miniz explanation for a truncated file
    assert "weights_only" not in message and "arbitrary code" not in message
    assert "\n" not in message
    reason = message.rsplit("checkpoint): ", 1)[1]
    assert reason and ". " not in reason and len(reason) < 120, reason


def test_a_good_checkpoint_still_loads(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 3})
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.ones(2))
