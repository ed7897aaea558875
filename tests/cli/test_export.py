"""`recsys train` / `evaluate` / `export` end to end for the two-tower model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsys.cli import main
from recsys.experiment import load_run
from recsys.train.checkpoint import load_checkpoint, save_checkpoint

DATA = "synthetic-120x80x2400"


def _train(tmp_path, *args: str) -> int:
    return main(
        [
            "train",
            "--model",
            "twotower",
            "--dataset",
            DATA,
            "-o",
            str(tmp_path / "runs"),
            "--no-tracking",
            "--quiet",
            "--set",
            "train.epochs=2",
            "--set",
            "train.batch_size=512",
            *args,
        ]
    )


def _run_dir(tmp_path):
    (run,) = [p.parent for p in (tmp_path / "runs").glob("*/config.yaml")]
    return run


def test_train_evaluate_export_two_tower(tmp_path, capsys):
    assert _train(tmp_path, "--set", "eval.item_slices=true", "--set", "model.ssl=rfm") == 0
    run = _run_dir(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"recall_at_20_tail", "recall_at_20_head", "n_users_tail"} <= set(metrics["test"])
    history = json.loads((run / "history.json").read_text())
    assert {"main", "ssl", "loss", "valid_recall_at_10_tail"} <= set(history[0])
    capsys.readouterr()

    assert main(["evaluate", str(run), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test"]["recall_at_20"] == metrics["test"]["recall_at_20"]
    assert "recall_at_20_tail" in evaluated["test"]

    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert "wrote 80 item and 120 user embeddings (d=64)" in capsys.readouterr().out
    items = np.load(out / "item_embeddings.npy")
    users = np.load(out / "user_embeddings.npy")
    assert items.shape == (80, 64) and users.shape == (120, 64)
    assert items.dtype == np.float32
    assert np.allclose(np.linalg.norm(items, axis=1), 1.0, atol=1e-5)
    ids = pd.read_csv(out / "items.csv", dtype={"id": str})
    assert list(ids.columns) == ["index", "id"] and len(ids) == 80
    assert len(pd.read_csv(out / "users.csv")) == 120
    summary = json.loads((out / "export.json").read_text())
    assert summary["model"] == "twotower" and summary["item_embeddings"] == [80, 64]

    # the exported vectors reproduce the model's scores
    _, _, _, model = load_run(run)
    scores = model.score(torch.arange(5)).numpy()
    assert np.allclose(users[:5] @ items.T, scores, atol=1e-5)


def test_export_needs_user_and_item_representations(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--model",
                "pop",
                "--dataset",
                DATA,
                "-o",
                str(tmp_path / "runs"),
                "--no-tracking",
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    # a user error: one line and exit 2, like every other bad input
    assert main(["export", str(_run_dir(tmp_path)), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no user or item representation" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def _train_bpr(tmp_path) -> Path:
    args = ["train", "--model", "bpr", "--dataset", DATA, "-o", str(tmp_path / "runs")]
    assert main([*args, "--no-tracking", "--quiet", "--set", "train.epochs=1"]) == 0
    return _run_dir(tmp_path)


def test_an_existing_export_is_kept_unless_overwrite_is_given(tmp_path, capsys):
    run = _train_bpr(tmp_path)
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {
        "item_embeddings.npy",
        "user_embeddings.npy",
        "items.csv",
        "users.csv",
        "export.json",
    }
    (out / "users.csv").write_text("mine\n")  # the user's own edit, not to be lost
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds" in err and "--overwrite" in err
    assert (out / "users.csv").read_text() == "mine\n"
    assert main(["export", str(run), "--out", str(out), "--overwrite"]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # and no temporary files


def test_non_finite_embeddings_are_refused(tmp_path, capsys):
    run = _train_bpr(tmp_path)
    best = run / "checkpoints" / "best.pt"
    state = load_checkpoint(best)
    weight = state["model"]["user_embedding.weight"]
    weight[7] = float("nan")
    save_checkpoint(best, state)
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "user embeddings have NaN or infinite values" in err and "first row 7" in err
    assert not (tmp_path / "x").exists()


def test_a_model_that_does_not_score_by_the_dot_product_is_refused(tmp_path, capsys, monkeypatch):
    from recsys.models.bpr import BPR

    run = _train_bpr(tmp_path)
    plain = BPR.scorer

    def with_item_bias(self, history=None):
        score = plain(self, history)
        return lambda users: score(users) + torch.arange(self.n_items, dtype=torch.float32)

    # a model whose scores are not user . item (here: plus an item bias)
    monkeypatch.setattr(BPR, "scorer", with_item_bias)
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(tmp_path / "x")]) == 2
    assert "does not score by the dot product" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
