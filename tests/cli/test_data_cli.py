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


def test_absurd_synthetic_sizes_are_a_user_error(capsys):
    for name, message in [
        ("synthetic-1000000000x1000000000x5000000000", "2**31 - 1"),
        ("synthetic-99999999999999999999x10x10", "at least 5 each"),
        ("synthetic-400000000x2000000000x2000000000", "GiB of memory"),
        ("synthetic-010x10x50", "write the sizes without leading zeros, 'synthetic-10x10x50'"),
    ]:
        assert main(["data", "stats", name]) == 2, name
        err = capsys.readouterr().err
        assert message in err and "internal error" not in err, err


def _stats(capsys, *args):
    """(exit code, parsed --json stats or None, stderr) of `recsys data stats`."""
    code = main(["data", "stats", *args, "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


def test_own_table_named_like_a_raw_movielens_file(tmp_path, capsys):
    own = tmp_path / "own"
    own.mkdir()
    (own / "ratings.csv").write_text("user_id,item_id,rating\n1,10,5\n1,11,3\n2,10,4\n")
    code, numbers, err = _stats(capsys, "--data-path", str(own / "ratings.csv"))
    assert code == 0, err
    assert (numbers["users"], numbers["items"], numbers["interactions"]) == (2, 2, 3)

    # data.columns (or data.sep) apply only to a table: the file is read as one
    mapped = tmp_path / "mapped"
    mapped.mkdir()
    (mapped / "ratings.csv").write_text("uid,iid,score\n1,10,5\n2,11,3\n")
    (mapped / "u.data").write_text("uid;iid\n7;70\n8;70\n")
    code, numbers, err = _stats(
        capsys,
        "--data-path",
        str(mapped / "u.data"),
        "--set",
        "columns={user: uid, item: iid}",
        "--set",
        "sep=;",
    )
    assert code == 0, err  # u.data read as a table
    assert (numbers["users"], numbers["items"]) == (2, 1)
    code, numbers, err = _stats(
        capsys,
        "--data-path",
        str(mapped / "ratings.csv"),
        "--set",
        "columns.user=uid",
        "--set",
        "columns.item=iid",
    )
    assert code == 0, err
    assert numbers["interactions"] == 2

    # a folder holding it, or a file the MovieLens layout does not fit: the error says why
    code, _, err = _stats(capsys, "--data-path", str(own))
    assert code == 2
    assert "taken for movielens files by the file name ratings.csv" in err
    assert "set data.format=csv and point data.path at the file" in err
    (own / "u.data").write_text("user_id,item_id\n1,10\n")
    code, _, err = _stats(capsys, "--data-path", str(own / "u.data"))
    assert code == 2 and "by the file name u.data; if it is a table of your own" in err


def test_movielens_file_path_reads_that_file_not_its_folder(tmp_path, capsys):
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "u.data").write_text("1\t10\t5\t100\n")
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,5,1\n2,11,4,2\n")
    code, numbers, err = _stats(capsys, "--data-path", str(folder / "ratings.csv"))
    assert code == 0, err
    assert numbers["interactions"] == 2  # ratings.csv, not the u.data next to it

    # an archive is not read as the extracted folder next to it
    (folder / "ml-1m.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    code, _, err = _stats(
        capsys, "--data-path", str(folder / "ml-1m.zip"), "--set", "format=movielens"
    )
    assert code == 2
    assert "not this file; extract the archive and pass its folder" in err


def test_sep_is_one_character_or_a_name(tmp_path, capsys):
    table = tmp_path / "inter.txt"
    table.write_text("uid\tiid\n1\t10\n2\t10\n2\t11\n")
    mapping = ["--set", "format=csv", "--set", "columns={user: uid, item: iid}"]
    for spelling in ("sep=tab", "sep=\\t", 'sep="\t"', "sep=TAB"):
        code, numbers, err = _stats(capsys, "--data-path", str(table), *mapping, "--set", spelling)
        assert code == 0, (spelling, err)
        assert numbers["interactions"] == 3
    for spelling in ('sep=""', "sep=ab", 'sep="\\n"'):
        code, _, err = _stats(capsys, "--data-path", str(table), *mapping, "--set", spelling)
        assert code == 2, spelling
        assert "data.sep: must be one character" in err and "--set sep=tab" in err, err
    code, _, err = _stats(capsys, "--data-path", str(table), *mapping)
    assert code == 2 and "tab-separated: set data.sep (--set sep=tab)" in err


def test_sep_names_in_the_config() -> None:
    from recsys.data.catalog import DataConfig

    assert DataConfig(sep="\\t").sep == "\t"
    assert DataConfig(sep="semicolon").sep == ";"
    assert DataConfig(sep="|").sep == "|"
