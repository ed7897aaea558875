"""DNIS keeps its base's fold-in: around a two-tower without the user id (only the item table
is searched) it trains under ``split.strategy=heldout_users`` and scores, evaluates and
exports held-out users from their fold-in rows, as the two-tower does alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recsys.cli import main
from recsys.experiment import load_run
from recsys.models.registry import create_model

DATA = "synthetic-200x80x3000"
SETTINGS = [
    "train.epochs=5",
    "train.num_threads=1",
    "split.strategy=heldout_users",
    "split.heldout_users=[0.2, 0.2]",
    "model.base=twotower",
    "model.base_params.use_user_id=false",
    "model.base_params.history=true",
    "model.base_params.ssl=none",
    "model.warm_start_epochs=2",
    "model.search_epochs=1",
    "run_name=d",
]


def _args(out, settings):
    args = ["train", "--model", "dnis", "--dataset", DATA, "-o", str(out), "--quiet"]
    return [*args, "--no-tracking", *(x for s in settings for x in ("--set", s))]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dnis-heldout")
    assert main(_args(out, SETTINGS)) == 0
    return out / "d"


def test_dnis_folds_in_when_its_base_does():
    assert create_model("dnis", base="twotower", base_params={"use_user_id": False}).fold_in
    assert not create_model("dnis", base="twotower").fold_in
    assert not create_model("dnis", base="bpr").fold_in


def test_the_run_scores_held_out_users_and_evaluate_reproduces_it(run, capsys):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["n_users"] > 0 and metrics["test"]["recall_at_20"] > 0
    model = load_run(run, "cpu")[3]
    # only the item table was searched and pruned: the two-tower has no user table here
    assert set(model.block_order) == {"item"}
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test"]["recall_at_20"] == pytest.approx(metrics["test"]["recall_at_20"])


def test_export_encodes_held_out_users_from_their_fold_in_rows(run, tmp_path):
    assert main(["export", str(run), "--out", str(tmp_path / "emb")]) == 0
    users = np.load(tmp_path / "emb" / "user_embeddings.npy")
    items = np.load(tmp_path / "emb" / "item_embeddings.npy")
    _cfg, _ds, split, model = load_run(run, "cpu")
    held = np.flatnonzero((np.diff(split.train.indptr) == 0) & (np.diff(split.foldin.indptr) > 0))
    assert len(held) > 1
    with torch.no_grad():
        scores = model.score(torch.from_numpy(held), split.history).numpy()
    np.testing.assert_allclose(users[held] @ items.T, scores, atol=1e-5)
    # from empty training rows every held-out user would get the same vector
    assert not np.allclose(users[held[0]], users[held[1]])


def test_probe_base_metrics_equal_the_runs(run, tmp_path):
    probe = ["--epochs", "1", "--no-tracking", "--quiet", "--no-baselines", "--no-itda"]
    assert main(["probe", str(run), *probe, "-k", "4", "--output-dir", str(tmp_path / "p")]) == 0
    quality = json.loads((tmp_path / "p" / "report.json").read_text())["quality"]
    metrics = json.loads((run / "metrics.json").read_text())
    for part in ("valid", "test"):
        for key in ("ndcg_at_10", "recall_at_20"):
            assert quality[f"{part}_base"][key] == pytest.approx(metrics[part][key], abs=1e-9)


def test_a_base_with_its_user_id_is_still_refused(tmp_path, capsys):
    settings = [s for s in SETTINGS if "use_user_id" not in s]
    assert main(_args(tmp_path, settings)) == 2
    assert "'dnis' does not fold in" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
