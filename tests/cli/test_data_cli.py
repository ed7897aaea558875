"""`recsys data prepare` and training on a downloaded, published split, through the CLI."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import yaml

from recsys.cli import main


def _lightgcn_files(folder, n_users=60, n_items=40, seed=0):
    rng = np.random.default_rng(seed)
    train, test = [], []
    for u in range(n_users):
        items = rng.choice(n_items, size=12, replace=False)
        train.append(" ".join(map(str, [u, *items[:10]])))
        test.append(" ".join(map(str, [u, *items[10:]])))
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")


def test_prepare_downloads_checks_and_trains_on_the_given_split(tmp_path, monkeypatch, capsys):
    source = tmp_path / "source"
    source.mkdir()
    _lightgcn_files(source)
    cards = tmp_path / "cards"
    cards.mkdir()
    files = [
        {
            "name": name,
            "url": (source / name).as_uri(),
            "sha256": hashlib.sha256((source / name).read_bytes()).hexdigest(),
        }
        for name in ("train.txt", "test.txt")
    ]
    (cards / "toy-gowalla.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "toy-gowalla",
                "format": "lightgcn",
                "files": files,
                "description": "a published train/test split",
                "split": {"strategy": "given"},
            }
        )
    )
    cache = tmp_path / "cache"
    monkeypatch.setenv("RECSYS_DATASET_CARDS", str(cards))

    assert main(["data", "list"]) == 0
    assert "toy-gowalla" in capsys.readouterr().out
    assert main(["data", "prepare", "toy-gowalla", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "users=60" in out and "interactions=720" in out
    assert (cache / "toy-gowalla" / "train.txt").is_file()

    monkeypatch.setenv("RECSYS_DATA_DIR", str(cache))
    code = main(
        [
            "train",
            "--dataset",
            "toy-gowalla",
            "--model",
            "itemknn",
            "--no-tracking",
            "-o",
            str(tmp_path / "runs"),
            "--quiet",
        ]
    )
    assert code == 0
    run = next((tmp_path / "runs").glob("*/metrics.json")).parent
    metrics = json.loads((run / "metrics.json").read_text())
    # the published test part (2 items per user) is kept; validation comes out of train
    assert metrics["test"]["n_users"] == 60
    from recsys.data.split import Split

    split = Split.load(run / "split.npz")
    assert split.test.nnz == 120 and split.valid.nnz == 60 and split.train.nnz == 540


def test_malformed_file_is_reported_with_file_and_row(tmp_path, capsys):
    bad = tmp_path / "ratings.csv"
    bad.write_text("user,item,rating\n1,10,5\n2,11,five\n")
    code = main(
        [
            "train",
            "--model",
            "pop",
            "--data-path",
            str(bad),
            "--no-tracking",
            "-o",
            str(tmp_path / "runs"),
            "--set",
            "data.columns={user: user, item: item, rating: rating}",
            "--set",
            "data.format=csv",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "ratings.csv: row 2, field 'rating': non-numeric value 'five'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # no half-made run folder
