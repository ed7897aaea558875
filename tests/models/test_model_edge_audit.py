"""Built-in models on unusual but legal input, and clear errors for nonsense (an audit)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.data.dataset import Dataset, FeatureTable, Vocabulary
from recsys.errors import DataError, NotFittedError
from recsys.models.registry import create_model
from tests.conftest import csr

BUILTINS = ["pop", "itemknn", "bpr", "lightgcn", "bm3", "twotower", "dnis"]


def fitted(name: str, train: sp.csr_array, dataset: Dataset | None = None, **config: object):
    model = create_model(name, **config).setup(train, dataset)
    if model.batch_kind == "none":
        model.fit(train)
    return model.eval()


@pytest.mark.parametrize("name", BUILTINS)
def test_score_checks_user_indices(name, planted, planted_split):
    model = fitted(name, planted_split.train, planted)
    n_users, n_items = planted_split.shape
    # Pop gave every out-of-range user the popular items and ItemKNN read user -1 as the last
    # user (numpy indexing); the embedding models failed inside torch (a device assert on CUDA)
    for bad in (-1, n_users, 10**6):
        with pytest.raises(IndexError, match=f"user index {bad} is out of range.*{n_users} users"):
            model.score(torch.tensor([0, bad]))
    with pytest.raises(TypeError, match="integer user indices"):
        model.score(torch.tensor([0.0, 1.0]))
    # no users is legal, even as torch.tensor([]) (float32), and numpy indices work everywhere
    assert model.score(torch.tensor([])).shape == (0, n_items)
    assert model.score(torch.empty(0, dtype=torch.long)).shape == (0, n_items)
    assert torch.equal(model.score(np.array([3, 1])), model.score(torch.tensor([3, 1])))


def test_fold_in_scores_check_users_against_the_history():
    train = csr([[0, 1], [1, 2], [0, 2]], 4)
    model = fitted("itemknn", train)
    history = csr([[0], [1], [2], [3], [0, 3]], 4)  # held-out users 3 and 4: rows past train's
    assert model.score(torch.tensor([4]), history=history).shape == (1, 4)
    with pytest.raises(IndexError, match="user index 5 is out of range"):
        model.score(torch.tensor([5]), history=history)


def feature_dataset() -> Dataset:
    """8 users x 6 items; a categorical feature with one value, a multi-valued feature with
    empty rows and a constant dense feature."""
    rng = np.random.default_rng(0)
    n_users, n_items = 8, 6
    users, items = rng.integers(0, n_users, 40), rng.integers(0, n_items, 40)
    genre = sp.csr_array((np.ones(3), ([0, 0, 3], [0, 1, 1])), shape=(n_items, 2))
    features = {
        "brand": FeatureTable("brand", "categorical", np.zeros(n_items, dtype=np.int64), ["b"]),
        "genre": FeatureTable("genre", "multi_hot", genre, ["g0", "g1"]),
        "size": FeatureTable("size", "dense", np.full((n_items, 2), 3.0, dtype=np.float32)),
    }
    return Dataset.from_arrays(
        "features",
        Vocabulary([f"u{u}" for u in range(n_users)], "user"),
        Vocabulary([f"i{i}" for i in range(n_items)], "item"),
        users,
        items,
        item_features=features,
    )


@pytest.mark.parametrize("name", ["itemknn", "twotower"])
def test_scores_in_float64(name):
    # itemknn multiplied float32 history rows by a float64 similarity, twotower's bags gave
    # embedding_bag float32 weights for a float64 table: both raised a dtype error
    ds = feature_dataset()
    config = {"history": True} if name == "twotower" else {}
    model = fitted(name, ds.interactions, ds, **config)
    users = torch.arange(ds.n_users)
    expected = model.score(users)
    model.double()
    scores = model.score(users)
    assert scores.dtype == torch.float64
    assert torch.allclose(scores.float(), expected, atol=1e-5)
    if name == "twotower":  # training in float64 too (value dropout of the multi-valued bags)
        model.train()
        batch = {"user": torch.tensor([0, 1, 2]), "item": torch.tensor([0, 3, 5])}
        loss = sum(model.loss(batch).values())
        assert loss.dtype == torch.float64 and torch.isfinite(loss)


def test_itemknn_history_of_another_catalogue_is_a_data_error():
    model = fitted("itemknn", csr([[0, 1], [1, 2]], 4))
    with pytest.raises(DataError, match="history has 3 items; the model has 4"):
        model.score(torch.tensor([0]), history=csr([[0], [1]], 3))


def test_twotower_history_with_fewer_users_is_a_data_error():
    model = fitted("twotower", csr([[0, 1], [1, 2], [2, 3], [0]], 4), history=True)
    with pytest.raises(DataError, match="history has 2 users; the model has 4"):
        model.score(torch.tensor([3]), history=csr([[0], [1]], 4))


@pytest.mark.parametrize("name", ["pop", "itemknn"])
def test_closed_form_fit_needs_setup_and_the_same_shape(name):
    train = csr([[0, 1], [1, 2], [0, 2]], 3)
    with pytest.raises(NotFittedError, match="call setup"):
        create_model(name).fit(train)  # the scikit-learn habit
    model = create_model(name).setup(train)
    with pytest.raises(DataError, match=r"4 x 4, but the model was set up for 3 users x 3 items"):
        model.fit(csr([[0], [1], [2], [3]], 4))


def test_twotower_multi_hot_stored_zeros_are_no_values():
    # the same 0/1 matrix with two stored zeros: twotower put their columns in the items' bags
    clean = sp.csr_array((np.ones(2), ([0, 3], [0, 1])), shape=(6, 2))
    data, indices = np.array([1.0, 0.0, 1.0, 0.0]), np.array([0, 1, 1, 0])
    stored_zeros = sp.csr_array((data, indices, np.array([0, 2, 2, 2, 3, 4, 4])), shape=(6, 2))
    assert np.array_equal(clean.toarray(), stored_zeros.toarray())
    scores = []
    for genre in (clean, stored_zeros):
        ds = feature_dataset()
        ds.item_features = {"genre": FeatureTable("genre", "multi_hot", genre, ["g0", "g1"])}
        torch.manual_seed(0)
        model = fitted("twotower", ds.interactions, ds, ssl="cfm")
        scores.append(model.score(torch.arange(ds.n_users)))
    assert torch.equal(scores[0], scores[1])
