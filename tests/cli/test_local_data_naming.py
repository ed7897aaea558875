"""Local files (``--data-path`` / ``data.path``) keep their own name and are never read as the
default dataset card: in the first run, in ``train -c <its config.yaml>``, in ``--resume``,
through the config round trip ``recsys tune`` makes, and in ``recsys data stats``; configs
written before ``data.name`` could be left out (``name: ml-100k`` next to a path) still read
the files as their own. Missing-column and rating errors on a table say how to map columns."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from recsys.cli import main
from recsys.config import RunConfig, validate
from recsys.data.catalog import DataConfig, load_dataset

FAST = ["--no-tracking", "--quiet", "--set", "train.epochs=2", "--set", "train.batch_size=256"]
MAP = ["--set", "data.columns.user=uid", "--set", "data.columns.item=iid"]


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    """``inter.csv`` with the header ``uid,iid,score,ts`` (not the default column names)."""
    rng = np.random.default_rng(0)
    rows = ["uid,iid,score,ts"]
    for u in range(60):
        for k, i in enumerate(rng.choice(40, size=12, replace=False)):
            rows.append(f"u{u},i{i},{rng.integers(1, 6)},{1_600_000_000 + 100 * u + k}")
    path = tmp_path / "data" / "inter.csv"
    path.parent.mkdir()
    path.write_text("\n".join(rows) + "\n")
    return path


def _runs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/config.yaml"))


def _dataset(run: Path) -> str:
    return json.loads((run / "metrics.json").read_text())["dataset"]


def test_train_then_its_config_then_resume_keep_the_files_name(csv, tmp_path):
    runs = tmp_path / "runs"
    assert main(["train", "-m", "bpr", "--data-path", str(csv), *MAP, "-o", str(runs), *FAST]) == 0
    (first,) = _runs(runs)
    assert first.name.startswith("bpr-inter-") and _dataset(first) == "inter"
    recorded = yaml.safe_load((first / "config.yaml").read_text())["data"]
    assert recorded["name"] is None and recorded["path"] == str(csv)

    # the run's own config.yaml trains the same data under the same name
    assert main(["train", "-c", str(first / "config.yaml"), "--no-tracking", "--quiet"]) == 0
    second = next(r for r in _runs(runs) if r != first)
    assert second.name.startswith("bpr-inter-") and _dataset(second) == "inter"

    # pretend the first run stopped after 2 of 3 epochs, and resume it
    cfg = yaml.safe_load((first / "config.yaml").read_text())
    cfg["train"]["epochs"] = 3
    (first / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--resume", str(first), "--quiet"]) == 0
    assert len(json.loads((first / "history.json").read_text())) == 3
    assert _dataset(first) == "inter"
    assert len(_runs(runs)) == 2


def test_the_tune_round_trip_keeps_the_files_their_own(csv):
    # run_tune validates cfg.model_dump() again, as do its trials and best_config.yaml
    cfg = validate(
        RunConfig, {"data": {"path": str(csv), "columns": {"user": "uid", "item": "iid"}}}
    )
    again = validate(RunConfig, cfg.model_dump(mode="json"))
    assert again.data.name is None and again.data == cfg.data
    ds = load_dataset(again.data)
    assert ds.name == "inter" and ds.default_split is None


def test_default_name_only_without_a_path(tmp_path):
    assert DataConfig().name == "ml-100k"
    assert DataConfig.model_validate(DataConfig().model_dump()).name == "ml-100k"
    assert DataConfig(path=tmp_path).name is None
    assert DataConfig(name="ml-1m", path=tmp_path).name == "ml-1m"


@pytest.mark.parametrize("prefix", ["", "data."])
def test_data_stats_names_the_files(csv, capsys, prefix):
    args = ["--set", f"{prefix}columns.user=uid", "--set", f"{prefix}columns.item=iid"]
    assert main(["data", "stats", "--data-path", str(csv), *args]) == 0
    assert capsys.readouterr().out.startswith("Dataset(name='inter', users=60, items=40")


def test_a_config_written_before_the_fix_reads_the_files_as_their_own(csv, tmp_path, caplog):
    config = tmp_path / "old.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "name": "ml-100k",
                    "path": str(csv),
                    "columns": {"user": "uid", "item": "iid"},
                },
                "model": {"name": "bpr"},
                "output_dir": str(tmp_path / "runs"),
            }
        )
    )
    with caplog.at_level(logging.WARNING, logger="recsys.data.catalog"):
        assert main(["train", "-c", str(config), *FAST]) == 0
    (run,) = _runs(tmp_path / "runs")
    assert run.name.startswith("bpr-inter-") and _dataset(run) == "inter"
    assert "data.name='ml-100k' names a dataset card" in caplog.text
    assert "(csv, not atomic/movielens)" in caplog.text

    # RecBole atomic files of one's own are not ml-100k's either (that card's are ml-100k.inter)
    folder = tmp_path / "atomic"
    folder.mkdir()
    (folder / "mydata.inter").write_text(
        "user_id:token\titem_id:token\n" + "".join(f"u{k % 7}\ti{k}\n" for k in range(30))
    )
    ds = load_dataset(DataConfig(name="ml-100k", path=folder))
    assert ds.name == "mydata" and ds.default_split is None


def test_a_missing_column_says_how_to_map_columns(csv, capsys):
    assert main(["train", "-m", "bpr", "--data-path", str(csv), *FAST]) == 2
    err = capsys.readouterr().err
    assert "missing required column 'user_id' (columns found: uid, iid, score, ts)" in err
    assert "data.columns.user=<column>, data.columns.item=<column>" in err
    assert "data.columns.rating, data.columns.timestamp" in err
    # a mapped column that is not there names the key that mapped it
    assert main(["data", "stats", "--data-path", str(csv), *MAP, "--set", "columns.rating=r"]) == 2
    assert "missing required column 'r'" in (err := capsys.readouterr().err)
    assert "data.columns.rating=r names no column of the file" in err


def test_a_rating_threshold_on_a_table_without_ratings_says_how_to_map_them(csv, capsys):
    args = ["data", "stats", "--data-path", str(csv), *MAP, "--set", "rating_threshold=4"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "rating_threshold=4 needs ratings" in err
    assert "data.columns.rating=<column>" in err
    # mapped, it works
    assert main([*args, "--set", "columns.rating=score"]) == 0


def test_a_name_given_to_ones_own_files_is_used(csv, tmp_path):
    # not a card's name: the user's name for their files, in the run folder and metrics.json
    args = ["train", "-m", "pop", "--data-path", str(csv), *MAP, *FAST, "-o", str(tmp_path)]
    assert main([*args, "--set", "data.name=shop-clicks"]) == 0
    (run,) = _runs(tmp_path)
    assert run.name.startswith("pop-shop-clicks-") and _dataset(run) == "shop-clicks"
    # and it survives the config round trip (train -c its config.yaml)
    assert (
        main(["train", "-c", str(run / "config.yaml"), *FAST, "-o", str(tmp_path / "again")]) == 0
    )
    assert [r.name.split("-2")[0] for r in _runs(tmp_path / "again")] == ["pop-shop-clicks"]
