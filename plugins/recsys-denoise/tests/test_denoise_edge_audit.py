"""The denoising wrappers on unusual but legal data (an audit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from recsys_denoise import prototypes as proto

from recsys.cli import main
from recsys.models.registry import create_model


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("data-cache")))
    monkeypatch.delenv("RECSYS_TRACKING_URI", raising=False)


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_array:
    r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    c = np.concatenate([np.asarray(x, dtype=np.int64) for x in rows])
    return sp.csr_array((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(rows), n_items))


@pytest.mark.parametrize(
    "train",
    [_csr([[0, 1, 2]], 5), _csr([[0], [0], [0]], 1)],
    ids=["one-user", "one-item"],
)
def test_protodenoise_collaborative_prototypes_of_a_single_row_or_column(train):
    # svds needs 0 < k < min(shape): one user or one item raised a scipy ValueError at set-up
    features = proto.collaborative_features(train, dim=32)
    assert features.shape[0] == train.shape[1] and np.isfinite(features).all()
    model = create_model("protodenoise", base_params={"embedding_size": 8}).setup(train)
    coo = sp.coo_array(train)
    users, items = torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col)
    model.train()
    batch = {"user": users, "pos": items.long(), "neg": torch.zeros_like(users)}
    assert torch.isfinite(sum(model.loss(batch).values()))
    model.eval()
    assert bool(torch.isfinite(model.score(torch.arange(train.shape[0]))).all())


def test_cli_protodenoise_on_a_one_user_dataset(tmp_path: Path):
    # exit 3 ("an internal error in recsys") before the fix
    code = main(
        [
            "train",
            "--dataset",
            "synthetic-1x20x15",
            "--model",
            "protodenoise",
            "--set",
            "model.base_params.embedding_size=8",
            "--set",
            "train.epochs=2",
            "-o",
            str(tmp_path / "runs"),
            "--no-tracking",
            "--quiet",
        ]
    )
    assert code == 0
