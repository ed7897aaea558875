"""The strong-generalisation split (``heldout_users``) and fold-in evaluation under it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.data.split import Split, SplitConfig, make_split, split_heldout_users
from recsys.errors import ConfigError, DataError
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model
from recsys.train.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def heldout(vae_planted) -> Split:
    return split_heldout_users(vae_planted, (40, 0.1), foldin_ratio=0.8, seed=5)


def _rows(m: sp.csr_array) -> np.ndarray:
    return np.flatnonzero(np.diff(m.indptr) > 0)


def test_heldout_users_partition_and_foldin_shares(vae_planted, heldout):
    full = vae_planted.interactions
    valid_users, test_users = _rows(heldout.valid), _rows(heldout.test)
    fold_users, train_users = _rows(heldout.foldin), _rows(heldout.train)
    assert len(valid_users) == 40 and len(test_users) == 30  # a count and a share of 300
    assert not set(valid_users) & set(test_users)
    assert not set(train_users) & (set(valid_users) | set(fold_users))
    assert set(fold_users) == set(valid_users) | set(test_users)
    assert len(train_users) == 300 - 70
    # training users keep their whole history
    assert (heldout.train[train_users] != full[train_users]).nnz == 0
    # a held-out user's fold-in and targets are disjoint, and cover the history on trained items
    seen = np.zeros(full.shape[1], dtype=bool)
    seen[heldout.train.indices] = True
    for u in np.concatenate([valid_users, test_users])[:20]:
        fold = set(heldout.foldin[[u]].indices)
        target = set(heldout.valid[[u]].indices) | set(heldout.test[[u]].indices)
        items = set(full[[u]].indices[seen[full[[u]].indices]])
        assert not fold & target and fold | target == items
        assert len(target) == int(np.floor(0.2 * len(items) + 1e-9))
    # same seed, same split
    again = split_heldout_users(vae_planted, (40, 0.1), foldin_ratio=0.8, seed=5)
    assert (again.foldin != heldout.foldin).nnz == 0 and (again.test != heldout.test).nnz == 0


def test_small_heldout_users_keep_everything_as_foldin(vae_planted):
    split = split_heldout_users(vae_planted, (40, 40), min_heldout_items=1000, seed=1)
    assert split.valid.nnz == 0 and split.test.nnz == 0 and split.foldin.nnz > 0


def test_split_config_and_save_load(vae_planted, heldout, tmp_path):
    cfg = SplitConfig(strategy="heldout_users", heldout_users=(40, 0.1), seed=5)
    made = make_split(vae_planted, cfg)
    assert (made.foldin != heldout.foldin).nnz == 0
    heldout.save(tmp_path / "s.npz")
    loaded = Split.load(tmp_path / "s.npz")
    assert loaded.foldin is not None and (loaded.foldin != heldout.foldin).nnz == 0
    assert "foldin=" in repr(loaded)
    assert (loaded.history != heldout.train + heldout.foldin).nnz == 0
    with pytest.raises(ValueError, match="heldout_users"):
        SplitConfig(heldout_users=(2.5, 10))
    with pytest.raises(DataError, match=r"split\.heldout_users"):
        make_split(vae_planted, SplitConfig(strategy="heldout_users", heldout_users=(0.5, 0.5)))


@pytest.mark.parametrize("name", ["ease", "itemknn"])
def test_heldout_users_are_scored_from_their_foldin(name, heldout):
    model = create_model(name)
    trainer = Trainer(model, heldout, TrainConfig(progress=False))
    trainer.fit()
    valid = trainer.evaluate("valid")
    test = trainer.evaluate("test")
    assert valid["n_users"] == 40 and test["n_users"] == 30
    # the same numbers by hand: scores from train + fold-in rows, fold-in items masked
    history = heldout.history
    by_hand = Evaluator().evaluate(model.scorer(history), heldout.test, exclude=[history])
    assert test["ndcg_at_10"] == pytest.approx(by_hand["ndcg_at_10"])
    # without the fold-in rows a held-out user has no history and the model is far worse
    blind = Evaluator().evaluate(model.scorer(), heldout.test, exclude=[history])
    assert test["ndcg_at_10"] > blind["ndcg_at_10"] + 0.05


def test_vae_trains_only_on_training_users_under_heldout(heldout):
    torch.manual_seed(0)
    model = create_model("multvae", latent_dim=16, hidden_dims=[32], total_anneal_steps=0)
    cfg = TrainConfig(epochs=2, batch_size=64, progress=False)
    result = Trainer(model, heldout, cfg).fit()
    assert result.history[-1]["valid_n_users"] == 40
    assert result.best_valid["ndcg_at_10"] > 0


@pytest.mark.parametrize("name", ["bpr", "lightgcn"])
def test_id_embedding_models_refuse_heldout_users(name, heldout):
    with pytest.raises(ConfigError, match="heldout_users"):
        Trainer(create_model(name), heldout, TrainConfig(progress=False))
