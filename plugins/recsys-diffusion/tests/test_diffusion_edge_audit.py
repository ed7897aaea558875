"""The diffusion models on unusual but legal data and API use (an audit)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.errors import DataError, NotFittedError
from recsys.models.registry import create_model

SMALL = {
    "diffrec": {"hidden_dims": [16]},
    "ldiffrec": {"hidden_dims": [16], "latent_size": 8, "cluster_dim": 4},
    "diffrec_student": {},
}


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_array:
    r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    c = np.concatenate([np.asarray(x, dtype=np.int64) for x in rows])
    return sp.csr_array((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(rows), n_items))


TRAIN = _csr([[0, 1, 2], [1, 3], [0, 2, 3], [4, 5], [0, 5], [1, 2, 4]], 6)


def _model(name: str, **config: object):
    torch.manual_seed(0)
    return create_model(name, **{**SMALL[name], **config}).setup(TRAIN).eval()


@pytest.mark.parametrize("name", list(SMALL))
def test_history_of_another_catalogue_is_a_data_error(name):
    # ldiffrec scored a 7-item history silently (its encoders pick item columns by index, so
    # the extra column was dropped); the others failed inside torch
    model = _model(name)
    for n_items in (5, 7):
        with pytest.raises(DataError, match=f"history has {n_items} items; the model has 6"):
            model.score(torch.tensor([0]), history=_csr([[0], [1]], n_items))


def test_any_sparse_history_format_is_accepted():
    model = _model("diffrec")
    history = _csr([[0], [5], [1, 2, 3]], 6)
    expected = model.score(torch.tensor([2, 0]), history=history)
    scores = model.score(torch.tensor([2, 0]), history=sp.coo_array(history))  # not subscriptable
    assert torch.equal(scores, expected)


@pytest.mark.parametrize("name", ["diffrec", "ldiffrec"])
def test_one_step_and_one_cluster_score_finitely(name):
    config = {"steps": 1, "n_clusters": 1} if name == "ldiffrec" else {"steps": 1}
    model = _model(name, **config)
    model.train()
    loss = sum(model.loss({"rows": torch.from_numpy(TRAIN.toarray())}).values())
    assert torch.isfinite(loss)
    model.eval()
    assert bool(torch.isfinite(model.score(torch.arange(TRAIN.shape[0]))).all())


def test_student_fit_needs_setup():
    with pytest.raises(NotFittedError, match="call setup"):
        create_model("diffrec_student").fit(TRAIN)  # was AttributeError: 'initialised'
