"""The VAE-family models and EASE on unusual but legal data and API use (an audit)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.cli import main
from recsys.errors import DataError, NotFittedError
from recsys.models.registry import create_model

SMALL = {
    "multvae": {"hidden_dims": [16], "latent_dim": 8},
    "multdae": {"latent_dim": 8},
    "ardvae": {"hidden_dims": [16], "latent_dim": 8},
    "ease": {"l2": 1.0},
}


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_array:
    r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    c = np.concatenate([np.asarray(x, dtype=np.int64) for x in rows])
    return sp.csr_array((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(rows), n_items))


TRAIN = _csr([[0, 1, 2], [1, 3], [0, 2, 3], [4, 5], [0, 5], [1, 2, 4]], 6)


def _fitted(name: str, train: sp.csr_array = TRAIN):
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name]).setup(train)
    if model.batch_kind == "none":
        model.fit(train)
    return model.eval()


@pytest.mark.parametrize("name", list(SMALL))
def test_history_of_another_catalogue_is_a_data_error(name):
    # EASE failed inside torch ("mat1 and mat2 shapes cannot be multiplied"), the VAEs raised a
    # plain ValueError
    model = _fitted(name)
    for n_items in (5, 7):
        with pytest.raises(DataError, match=f"history has {n_items} items; the model has 6"):
            model.score(torch.tensor([0]), history=_csr([[0], [1]], n_items))


def test_ease_fit_needs_setup_and_the_same_shape():
    with pytest.raises(NotFittedError, match="call setup"):
        create_model("ease").fit(TRAIN)  # was AttributeError: no attribute 'weights'
    model = create_model("ease").setup(TRAIN)
    with pytest.raises(DataError, match="but the model was set up for 6 users x 6 items"):
        model.fit(_csr([[0, 1], [2, 3]], 8))  # was a RuntimeError from copy_


@pytest.mark.parametrize("name", ["multdae", "ease"])
def test_one_training_user_in_the_api(name):
    model = _fitted(name, _csr([[0, 2]], 4))
    scores = model.score(torch.tensor([0]))
    assert scores.shape == (1, 4) and bool(torch.isfinite(scores).all())


@pytest.mark.parametrize("name", ["multvae", "ardvae"])
def test_one_training_user_trains_without_the_collapse_panel(name, tmp_path: Path):
    # the collapse panel needs variances over >= 2 users: on_epoch_end raised "need [N >= 2, K]
    # means and log-variances" and `recsys train` exited 3 with a traceback
    out = tmp_path / "runs"
    code = main(
        [
            "train",
            "--dataset",
            "synthetic-1x20x15",
            "--model",
            name,
            "--set",
            "model.hidden_dims=[16]",
            "--set",
            "model.latent_dim=8",
            "--set",
            "train.epochs=2",
            "-o",
            str(out),
            "--no-tracking",
            "--quiet",
        ]
    )
    assert code == 0
    run = next(out.glob("*/metrics.json")).parent
    history = json.loads((run / "history.json").read_text())
    assert all("beta" in row and "kl_total" not in row for row in history)
    assert not (run / "collapse.json").exists()  # no report without a panel
    model = create_model(name, **SMALL[name]).setup(_csr([[0, 2]], 4))
    assert "kl_total" not in model.on_epoch_end(0) and model.write_artifacts(tmp_path, []) == []
