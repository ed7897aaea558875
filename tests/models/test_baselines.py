import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.errors import ConfigError
from recsys.models.itemknn import ItemKNN
from recsys.models.lightgcn import LightGCN, normalized_adjacency
from recsys.models.pop import Pop
from recsys.models.registry import create_model
from tests.conftest import csr


def test_pop_scores_are_training_counts():
    train = csr([[0, 1], [1], [1, 2]], 4)
    model = Pop().setup(train)
    model.fit(train)
    assert model.score(torch.tensor([0])).tolist() == [[1.0, 3.0, 1.0, 0.0]]


def test_itemknn_matches_dense_cosine():
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 12)) < 0.3).astype(np.float32)
    train = sp.csr_array(dense)
    model = ItemKNN(k=11).setup(train)
    model.fit(train)
    norms = np.linalg.norm(dense, axis=0)
    sim = dense.T @ dense / (np.outer(norms, norms) + 1e-12)
    np.fill_diagonal(sim, 0.0)
    expected = dense @ sim
    got = model.score(torch.arange(30)).numpy()
    assert np.allclose(got, expected, atol=1e-5)


def test_itemknn_keeps_k_neighbours():
    train = sp.csr_array((np.random.default_rng(1).random((40, 20)) < 0.4).astype(np.float32))
    model = ItemKNN(k=3).setup(train)
    model.fit(train)
    dense_sim = model.similarity().to_dense()
    assert ((dense_sim > 0).sum(0) <= 3).all()


def test_normalized_adjacency_is_symmetric_and_scaled():
    train = csr([[0, 1], [1]], 2)
    adj = normalized_adjacency(train).toarray()
    # nodes: u0 (deg 2), u1 (deg 1), i0 (deg 1), i1 (deg 2)
    assert np.allclose(adj, adj.T)
    assert np.isclose(adj[0, 2], 1 / np.sqrt(2 * 1))
    assert np.isclose(adj[0, 3], 1 / np.sqrt(2 * 2))
    assert np.isclose(adj[1, 3], 1 / np.sqrt(1 * 2))
    assert adj[0, 1] == 0 and adj[2, 3] == 0


def test_lightgcn_backends_agree_in_values_and_gradients(planted_split):
    torch.manual_seed(0)
    a = LightGCN(propagation="sparse", n_layers=3).setup(planted_split.train)
    b = LightGCN(propagation="pyg", n_layers=3).setup(planted_split.train)
    b.load_state_dict(a.state_dict())
    ua, ia = a.propagate()
    ub, ib = b.propagate()
    assert torch.allclose(ua, ub, atol=1e-5) and torch.allclose(ia, ib, atol=1e-5)
    (ua.sum() + ia.pow(2).sum()).backward()
    (ub.sum() + ib.pow(2).sum()).backward()
    assert torch.allclose(a.embedding.weight.grad, b.embedding.weight.grad, atol=1e-5)


def test_lightgcn_layer_mean_matches_dense_math():
    train = csr([[0, 2], [1], [2, 3]], 4)
    torch.manual_seed(0)
    model = LightGCN(embedding_size=3, n_layers=2).setup(train)
    adj = torch.from_numpy(normalized_adjacency(train).toarray())
    e0 = model.embedding.weight.detach()
    expected = (e0 + adj @ e0 + adj @ (adj @ e0)) / 3
    users, items = model.propagate()
    assert torch.allclose(torch.cat([users, items]), expected, atol=1e-6)


def test_unknown_model_and_bad_hyperparameter_are_clear():
    with pytest.raises(ConfigError, match="unknown model 'nope'.*bpr"):
        create_model("nope")
    with pytest.raises(ConfigError, match="model.embedding_size"):
        create_model("bpr", embedding_size=0)
    with pytest.raises(ConfigError, match="unknown key 'model.embeding_size'"):
        create_model("bpr", embeding_size=8)
