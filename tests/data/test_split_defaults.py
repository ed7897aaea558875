"""Which split a run uses: the run's own, the published one, or the dataset card's default;
splits that leave nothing to test or validate on fail before a run folder exists."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from recsys.cli import main
from recsys.data import catalog
from recsys.data.split import SplitConfig, make_split, resolve_split_config, split_dataset
from recsys.data.synthetic import make_synthetic
from recsys.errors import DataError

DATA = "synthetic-120x80x2400"


@pytest.fixture
def half_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A card ``halves`` (atomic files placed by hand) whose default split is 2:1:1."""
    cards, cache = tmp_path / "cards", tmp_path / "cache"
    cards.mkdir()
    monkeypatch.setenv(catalog.CARDS_ENV, str(cards))
    monkeypatch.setenv(catalog.DATA_DIR_ENV, str(cache))
    card = {
        "name": "halves",
        "format": "atomic",
        "files": [{"name": "halves.inter"}],
        "manual": "made by the test",
        "split": {"strategy": "ratio", "ratios": [0.5, 0.25, 0.25]},
    }
    (cards / "halves.yaml").write_text(yaml.safe_dump(card))
    (cache / "halves").mkdir(parents=True)
    rows = [f"{u}\t{i}" for u in range(30) for i in range(u % 5, u % 5 + 8)]
    (cache / "halves" / "halves.inter").write_text(
        "user_id:token\titem_id:token\n" + "\n".join(rows) + "\n"
    )
    return "halves"


def test_a_run_uses_and_records_the_cards_default_split(half_card, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--model", "pop", "--dataset", half_card, "-o", str(out),
                 "--no-tracking", "--quiet"]) == 0  # fmt: skip
    (config,) = out.glob("*/config.yaml")
    split = yaml.safe_load(config.read_text())["split"]
    assert (split["strategy"], split["ratios"]) == ("ratio", [0.5, 0.25, 0.25])
    # the run's own ratios win over the card's
    own = tmp_path / "own"
    own_ratios = ["--set", "split.ratios=[0.8,0.1,0.1]"]
    assert main(["train", "--model", "pop", "--dataset", half_card, "-o", str(own),
                 "--no-tracking", "--quiet", *own_ratios]) == 0  # fmt: skip
    (config,) = own.glob("*/config.yaml")
    assert yaml.safe_load(config.read_text())["split"]["ratios"] == [0.8, 0.1, 0.1]


def test_the_card_split_sets_the_shares():
    ds = make_synthetic(60, 40, 1200, seed=0)
    ds.default_split = {"strategy": "ratio", "ratios": (0.5, 0.25, 0.25)}
    split = split_dataset(ds, SplitConfig())
    assert split.train.nnz / ds.n_interactions == pytest.approx(0.5, abs=0.05)  # 8:1:1 gives 0.8
    assert resolve_split_config(ds, SplitConfig()).ratios == (0.5, 0.25, 0.25)
    assert resolve_split_config(ds, SplitConfig(ratios=(0.6, 0.2, 0.2))).ratios == (0.6, 0.2, 0.2)
    ds.default_split = None
    assert resolve_split_config(ds, SplitConfig()).strategy == "ratio"


@pytest.mark.parametrize(
    "ratios", [(math.nan, 0.1, 0.1), (0.8, math.nan, 0.2), (0.8, math.inf, 0.2)]
)
def test_ratios_must_be_finite(ratios):
    with pytest.raises(ValidationError, match="finite"):
        SplitConfig(ratios=ratios)


@pytest.mark.parametrize(
    ("ratios", "part"), [((0.9, 0.1, 0.0), "test"), ((0.9, 0.0, 0.1), "valid")]
)
def test_an_empty_test_or_validation_part_is_an_error(ratios, part):
    ds = make_synthetic(60, 40, 1200, seed=0)
    with pytest.raises(DataError, match=f"the split leaves the {part} part empty"):
        make_split(ds, SplitConfig(ratios=ratios))


def test_an_empty_test_part_fails_before_a_run_folder_exists(tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["train", "--model", "pop", "--dataset", DATA, "-o", str(out), "--no-tracking",
                 "--set", "split.ratios=[0.9,0.1,0]"])  # fmt: skip
    assert code == 2
    assert "the split leaves the test part empty" in capsys.readouterr().err
    assert not out.exists()


def test_ratios_of_the_wrong_length_say_three_shares_are_needed(tmp_path, capsys):
    with pytest.raises(ValidationError, match=r"needs three shares \(train, valid, test\)"):
        SplitConfig(ratios=[0.5, 0.5])
    for value in ("[0.5,0.5]", "[0.4,0.2,0.2,0.2]", "0.5"):
        code = main(["train", "--model", "pop", "--dataset", DATA, "-o", str(tmp_path / "runs"),
                     "--no-tracking", "--set", f"split.ratios={value}"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2
        assert (
            "split.ratios: needs three shares (train, valid, test) summing to 1, "
            "e.g. [0.8, 0.1, 0.1]" in err
        ), err
        assert "Field required" not in err and "Tuple should" not in err


def test_an_mmrec_file_without_test_rows_names_x_label(tmp_path, capsys):
    folder = tmp_path / "notest"
    folder.mkdir()
    inter = folder / "notest.inter"
    rows = [f"{u}\t{i}\t{1 if i == u % 6 else 0}" for u in range(12) for i in range(6)]
    inter.write_text("userID\titemID\tx_label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "runs"
    code = main(["train", "--model", "pop", "--data-path", str(folder), "-o", str(out),
                 "--no-tracking", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "the split leaves the test part empty" in err
    assert f"{inter} has no interaction with x_label 2 (test)" in err, err
    assert "clean_test_min_rating" not in err
    assert not out.exists()
    # a ratio split that gives test no share is told so, without the clean-test key
    ds = make_synthetic(60, 40, 1200, seed=0)
    with pytest.raises(DataError) as info:
        make_split(ds, SplitConfig(ratios=(0.9, 0.1, 0.0)))
    assert str(info.value).endswith("give the test part a share (split.ratios)")
    with pytest.raises(DataError, match=r"lower split.clean_test_min_rating, or give the test"):
        make_split(ds, SplitConfig(clean_test_min_rating=2.0))


def test_the_published_split_wins_over_the_card_default():
    ds = make_synthetic(60, 40, 1200, seed=0)
    ds.split_labels = np.where(np.arange(ds.n_interactions) % 10 == 0, 2, 0).astype(np.int8)
    ds.default_split = {"strategy": "ratio", "ratios": (0.5, 0.25, 0.25)}
    assert resolve_split_config(ds, SplitConfig()).strategy == "given"
