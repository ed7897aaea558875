"""Readers: ids kept exactly and bad ids or feature files named, through ``load_dataset``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.cli import main
from recsys.data.catalog import DataConfig, load_dataset
from recsys.data.dataset import Dataset
from recsys.data.features import item_texts
from recsys.errors import DataError

Write = Callable[..., Path]

BIG, BIG_NEIGHBOUR = "9007199254740993", "9007199254740992"  # 2**53 + 1 and 2**53
TOO_BIG = str(10**20)
INT64_MAX = str(np.iinfo(np.int64).max)


def load(path: Path) -> Dataset:
    return load_dataset(DataConfig(path=path))


def _mmrec(tmp_path: Path, rows: str, features: np.ndarray | None = None) -> Path:
    folder = tmp_path / "mm"
    folder.mkdir(exist_ok=True)
    (folder / "mm.inter").write_text("userID\titemID\tx_label\n" + rows)
    if features is not None:
        np.save(folder / "image_feat.npy", features)
    return folder


# --------------------------------------------------------------------------- missing ids


@pytest.mark.parametrize("field", ["user_id", "item_id"])
def test_parquet_nan_id_is_missing_value(tmp_path: Path, field: str) -> None:
    path = tmp_path / "t.parquet"
    frame = pd.DataFrame({"user_id": [1.0, 2.0, 3.0], "item_id": [4.0, 5.0, 6.0]})
    frame.loc[1, field] = np.nan  # would have become an interaction of the last id
    frame.to_parquet(path)
    with pytest.raises(DataError, match=rf"t\.parquet: row 2, field '{field}': missing value"):
        load(path)


def test_parquet_nullable_integer_id_is_missing_value(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    users = pd.array([1, 2, None], dtype="Int64")
    pd.DataFrame({"user_id": users, "item_id": [1, 2, 3]}).to_parquet(path)
    with pytest.raises(DataError, match=r"t\.parquet: row 3, field 'user_id': missing value"):
        load(path)


def test_cli_stats_names_missing_parquet_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"user_id": [1, 2, 3], "item_id": [4.0, np.nan, 6.0]}).to_parquet(path)
    assert main(["data", "stats", "mine", "--data-path", str(path)]) == 2
    assert "t.parquet: row 2, field 'item_id': missing value" in capsys.readouterr().err


def test_csv_empty_id_is_missing_value(write: Write) -> None:
    path = write("t.csv", "user_id,item_id\n1,2\n,3\n")
    with pytest.raises(DataError, match=r"t\.csv: row 2, field 'user_id': missing value"):
        load(path)


# --------------------------------------------------------------------------- large ids


def _big_ids(fmt: str, write: Write, tmp_path: Path) -> Path:
    """Files in ``fmt`` whose users are 2**53 + 1 and 2**53 (one float64 apart from none)."""
    if fmt == "mmrec":
        return _mmrec(tmp_path, f"{BIG}\t0\t0\n{BIG_NEIGHBOUR}\t1\t0\n")
    if fmt == "lightgcn":
        write("g/test.txt", f"{BIG} 3\n")
        return write("g/train.txt", f"{BIG} 1\n{BIG_NEIGHBOUR} 2\n").parent
    if fmt == "movielens":
        return write("ml/u.data", f"{BIG}\t1\t5\t1\n{BIG_NEIGHBOUR}\t2\t4\t2\n").parent
    if fmt == "csv":
        return write("t.csv", f"user_id,item_id\n{BIG},1\n{BIG_NEIGHBOUR},2\n")
    kind = fmt.removeprefix("atomic-")
    return write("a/a.inter", f"user_id:{kind}\titem_id:token\n{BIG}\t1\n{BIG_NEIGHBOUR}\t2\n")


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    "fmt", ["mmrec", "lightgcn", "movielens", "csv", "atomic-float", "atomic-token"]
)
def test_large_integer_ids_kept_exactly(fmt: str, write: Write, tmp_path: Path) -> None:
    ds = load(_big_ids(fmt, write, tmp_path))
    assert list(ds.users.ids) == [BIG_NEIGHBOUR, BIG]  # two users, in exact numeric order


def test_parquet_int64_ids_kept_exactly(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    users = np.array([int(BIG), int(BIG_NEIGHBOUR), int(INT64_MAX)], dtype=np.int64)
    pd.DataFrame({"user_id": users, "item_id": [1, 2, 3]}).to_parquet(path)
    assert list(load(path).users.ids) == [BIG_NEIGHBOUR, BIG, INT64_MAX]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    ("relative", "text", "message"),
    [
        (
            "mm/mm.inter",
            f"userID\titemID\tx_label\n0\t0\t0\n1\t{TOO_BIG}\t0\n",
            "row 2, field 'itemID'",
        ),
        ("g/train.txt", f"0 1\n1 2 {TOO_BIG}\n", "row 2, field 'item id'"),
        ("ml/u.data", f"1\t1\t5\t1\n{TOO_BIG}\t1\t3\t2\n", "row 2, field 'user_id'"),
        ("a/a.inter", f"user_id:float\titem_id:token\n{TOO_BIG}\t1\n", "row 1, field 'user_id'"),
    ],
)
def test_id_beyond_int64_is_error(write: Write, relative: str, text: str, message: str) -> None:
    path = write(relative, text)
    if relative.startswith("g/"):
        write("g/test.txt", "0 3\n")
    name = Path(relative).name.replace(".", r"\.")
    with pytest.raises(
        DataError, match=rf"{name}: {message}: value '{TOO_BIG}' does not fit a 64-bit integer"
    ):
        load(path.parent)


def test_int64_extremes_are_ids(write: Write) -> None:
    low = str(np.iinfo(np.int64).min)
    path = write("ml/u.data", f"{low}\t1\t5\t1\n{INT64_MAX}\t1\t3\t2\n")
    assert list(load(path.parent).users.ids) == [low, INT64_MAX]


# --------------------------------------------------------------------------- MMRec ids


@pytest.mark.parametrize(
    ("rows", "field"),
    [("0\t0\t0\n0\t-1\t0\n1\t1\t0\n", "itemID"), ("0\t0\t0\n-1\t1\t0\n", "userID")],
)
def test_mmrec_negative_id_is_error(tmp_path: Path, rows: str, field: str) -> None:
    # with features, item -1 would silently take the last item's feature row
    folder = _mmrec(tmp_path, rows, np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(DataError, match=rf"mm\.inter: row 2, field '{field}': negative id -1"):
        load(folder)


def test_mmrec_item_beyond_feature_rows_is_error(tmp_path: Path) -> None:
    folder = _mmrec(tmp_path, "0\t0\t0\n0\t5\t0\n", np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(DataError, match=r"image_feat\.npy: has 2 rows but .*needs 6 rows"):
        load(folder)


# --------------------------------------------------------------------------- feature files


def test_mmrec_feature_file_of_strings(tmp_path: Path) -> None:
    folder = _mmrec(tmp_path, "0\t0\t0\n0\t1\t0\n", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataError, match=r"image_feat\.npy: holds strings, not numbers"):
        load(folder)


def test_mmrec_feature_file_that_is_npz(tmp_path: Path) -> None:
    folder = _mmrec(tmp_path, "0\t0\t0\n0\t1\t0\n")
    with open(folder / "image_feat.npy", "wb") as fh:
        np.savez(fh, image=np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"image_feat\.npy: is an \.npz archive, not a single"):
        load(folder)


def test_mmrec_feature_file_that_is_not_numpy_or_has_no_columns(tmp_path: Path) -> None:
    folder = _mmrec(tmp_path, "0\t0\t0\n0\t1\t0\n")
    (folder / "image_feat.npy").write_text("0.1,0.2\n0.3,0.4\n")
    with pytest.raises(DataError, match=r"image_feat\.npy: is not a \.npy file"):
        load(folder)
    np.save(folder / "image_feat.npy", np.zeros((2, 0), dtype=np.float32))
    with pytest.raises(DataError, match=r"image_feat\.npy: expected a 2-d matrix with at least"):
        load(folder)


def test_mmrec_feature_overflowing_float32(tmp_path: Path) -> None:
    features = np.zeros((2, 3))
    features[1, 2] = 1e40  # finite in float64, inf in float32
    folder = _mmrec(tmp_path, "0\t0\t0\n0\t1\t0\n", features)
    with pytest.raises(
        DataError, match=r"image_feat\.npy: row 1 \(item id 1\): value 1e\+40 overflows float32"
    ):
        load(folder)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("item_id:token\tp:float\n1\t2\n2\t-1e40\n", r"row 2, field 'p': value -1e\+40"),
        ("item_id:token\tv:float_seq\n1\t1 1e39\n2\t0 0\n", r"row 1, field 'v': value 1e\+39"),
    ],
)
def test_atomic_feature_overflowing_float32(write: Write, item: str, message: str) -> None:
    write("a/a.item", item)
    inter = write("a/a.inter", "user_id:token\titem_id:token\n1\t1\n2\t2\n")
    with pytest.raises(DataError, match=rf"a\.item: {message} overflows float32"):
        load(inter.parent)


# --------------------------------------------------------------------------- float-typed ids


@pytest.mark.parametrize(
    ("inter", "item"),
    [
        (
            "user_id:token\titem_id:float\n1\t10.0\n2\t20\n",
            "item_id:token\tc:token\n10\tx\n20\ty\n",
        ),
        (
            "user_id:token\titem_id:token\n1\t10\n2\t20\n",
            "item_id:float\tc:token\n10.0\tx\n2e1\ty\n",
        ),
    ],
)
def test_atomic_float_ids_match_token_ids(write: Write, inter: str, item: str) -> None:
    write("a/a.item", item)
    ds = load(write("a/a.inter", inter).parent)
    assert list(ds.items.ids) == ["10", "20"]
    assert ds.item_features["c"].values.tolist() == [0, 1]  # no item lost its features


def test_atomic_fractional_float_id_is_error(write: Write) -> None:
    path = write("a/a.inter", "user_id:token\titem_id:float\n1\t10\n2\t10.5\n")
    with pytest.raises(
        DataError, match=r"a\.inter: row 2, field 'item_id': non-integer value '10\.5'"
    ):
        load(path.parent)


def test_parquet_float_ids_are_whole_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"user_id": [10.0, 1.0], "item_id": [1, 2]}).to_parquet(path)
    assert list(load(path).users.ids) == ["1", "10"]
    pd.DataFrame({"user_id": [10.0, 1.5], "item_id": [1, 2]}).to_parquet(path)
    with pytest.raises(DataError, match=r"row 2, field 'user_id': non-integer value '1\.5'"):
        load(path)


def test_text_fields_of_float_typed_item_file(write: Write) -> None:
    write("a/a.item", "item_id:float\ttitle:token_seq\n10.0\tred shoe\n20\tblue hat\n")
    ds = load(write("a/a.inter", "user_id:token\titem_id:token\n1\t10\n2\t20\n").parent)
    assert item_texts(ds, ["title"]) == ["red shoe", "blue hat"]


# --------------------------------------------------------------------------- messages


def test_duplicate_id_message_prints_plain_id(write: Write) -> None:
    write("a/a.item", "item_id:token\tc:token\n10\tx\n10\ty\n")
    inter = write("a/a.inter", "user_id:token\titem_id:token\n1\t10\n")
    with pytest.raises(DataError) as info:
        load(inter.parent)
    assert str(info.value).endswith("a.item: row 2, field 'item_id': duplicate id '10'")


def test_lightgcn_message_prints_plain_token(write: Write) -> None:
    write("g/test.txt", "1 3\n")
    train = write("g/train.txt", "1 x\n")
    with pytest.raises(DataError) as info:
        load(train.parent)
    assert str(info.value).endswith(
        "train.txt: row 1, field 'item id': not a non-negative integer: 'x'"
    )


def test_a_header_in_another_delimiter_gets_a_hint(tmp_path: Path) -> None:
    semicolons = tmp_path / "t.csv"
    semicolons.write_text("user_id;item_id\na;b\n")
    with pytest.raises(DataError, match="the header looks semicolon-separated: set data.sep"):
        load_dataset(DataConfig(path=semicolons))
    commas = tmp_path / "x.inter"
    commas.write_text("user_id:token,item_id:token\n1,2\n")
    with pytest.raises(DataError, match="atomic files are tab-separated"):
        load_dataset(DataConfig(path=commas))


def test_movielens_feature_files_with_a_repeated_id(tmp_path: Path) -> None:
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "u.data").write_text("1\t1\t5\t1\n2\t2\t3\t2\n")
    flags = "|".join(["0"] * 19)
    (folder / "u.item").write_text(
        f"1|A (1995)|01-Jan-1995||http://a|{flags}\n"
        f"2|B (1996)|01-Jan-1996||http://b|{flags}\n"
        f"1|C (1997)|01-Jan-1997||http://c|{flags}\n"
    )
    with pytest.raises(DataError, match=r"u\.item: row 3, field 'item_id': duplicate id '1'"):
        load_dataset(DataConfig(path=folder))
    (folder / "u.item").unlink()
    (folder / "u.user").write_text("1|24|M|technician|85711\n1|53|F|other|94043\n")
    with pytest.raises(DataError, match=r"u\.user: row 2, field 'user_id': duplicate id '1'"):
        load_dataset(DataConfig(path=folder))


def test_a_rating_that_overflows_float32(tmp_path: Path) -> None:
    table = tmp_path / "r.csv"
    table.write_text("user_id,item_id,rating\na,x,4\nb,y,1e40\n")
    with pytest.raises(
        DataError, match=r"interaction 2 has rating 1e\+40, which overflows float32"
    ):
        load_dataset(DataConfig(path=table, columns={"rating": "rating"}))


def test_a_header_that_names_a_column_twice(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("user_id,item_id,user_id\na,x,b\n")
    with pytest.raises(DataError, match=r"t\.csv: the header names column 'user_id' twice"):
        load_dataset(DataConfig(path=table))
    folder = tmp_path / "mm"
    folder.mkdir()
    (folder / "mm.inter").write_text("userID\titemID\titemID\tx_label\n0\t0\t1\t0\n")
    with pytest.raises(DataError, match=r"mm\.inter: the header names column 'itemID' twice"):
        load_dataset(DataConfig(path=folder, format="mmrec"))
