"""Readers: values read from tiny files, and a clear error for every kind of bad input."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.catalog import detect_format, read_path
from recsys.data.dataset import Dataset
from recsys.data.readers import (
    ML100K_GENRES,
    read_atomic,
    read_lightgcn,
    read_mmrec,
    read_movielens,
    read_table,
    write_atomic,
)
from recsys.data.synthetic import make_synthetic
from recsys.errors import DataError, DatasetNotFoundError

Write = Callable[..., Path]

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "10\t2\t4\t100\n"
    "2\t1\t5\t200\n"
    "10\t1\t3\t300\n"
    "2\t3\t1\t400\n"
)
ITEM = (
    "item_id:token\tclass:token_seq\tyear:token\tprice:float\tvec:float_seq\n"
    "1\tAction Comedy\t1995\t9.5\t1 2\n"
    "2\tDrama\t\t3\t3 4\n"
    "3\tAction\t2001\t1.25\t5 6\n"
    "99\tHorror\t1980\t0\t0 0\n"
)
USER = "user_id:token\tgender:token\n2\tF\n10\tM\n"


def pairs(ds: Dataset) -> dict[tuple[str, str], int]:
    users, items = ds.coo()
    raw_u, raw_i = ds.users.raw(users), ds.items.raw(items)
    return {(u, i): k for k, (u, i) in enumerate(zip(raw_u, raw_i, strict=True))}


# ---------------------------------------------------------------------------------- atomic


def test_atomic_reads_interactions_and_features(write: Write) -> None:
    write("toy/toy.inter", INTER)
    write("toy/toy.item", ITEM)
    write("toy/toy.user", USER)
    ds = read_atomic(write("toy/toy.inter", INTER).parent)
    assert ds.name == "toy"
    assert list(ds.users.ids) == ["2", "10"]  # numeric order, not string order
    assert list(ds.items.ids) == ["1", "2", "3"]  # item 99 has no interaction: dropped
    where = pairs(ds)
    assert ds.ratings[where[("10", "2")]] == 4.0
    assert ds.timestamps[where[("2", "3")]] == 400.0
    cls = ds.item_features["class"]
    assert cls.kind == "multi_hot" and cls.vocab == ["Action", "Comedy", "Drama"]
    assert cls.values.toarray().tolist() == [[1, 1, 0], [0, 0, 1], [1, 0, 0]]
    genre = ds.item_features["genre"]  # alias of class
    assert genre.name == "genre" and genre.vocab == cls.vocab
    year = ds.item_features["year"]
    assert year.kind == "categorical" and year.vocab == ["1995", "2001"]
    assert year.values.tolist() == [0, -1, 1]  # empty field -> -1
    price = ds.item_features["price"]
    assert price.kind == "dense" and price.values[:, 0].tolist() == [9.5, 3.0, 1.25]
    assert ds.item_features["vec"].values.tolist() == [[1, 2], [3, 4], [5, 6]]
    gender = ds.user_features["gender"]
    assert gender.vocab == ["F", "M"] and gender.values.tolist() == [0, 1]


def test_atomic_accepts_file_path_and_unique_inter(write: Write) -> None:
    inter = write("folder/other.inter", INTER)
    assert read_atomic(inter).n_interactions == 4
    assert read_atomic(inter.parent).name == "other"  # the only .inter in the folder
    with pytest.raises(DatasetNotFoundError, match=r"no nope\.inter.*other\.inter"):
        read_atomic(inter.parent, "nope")


def test_atomic_item_without_row_gets_empty_features(write: Write) -> None:
    write("t/t.inter", INTER)
    write("t/t.item", "item_id:token\tclass:token_seq\tyear:token\n1\tAction\t1995\n")
    ds = read_atomic(write("t/t.inter", INTER))
    assert ds.item_features["class"].values.toarray()[:, 0].tolist() == [1, 0, 0]
    assert ds.item_features["year"].values.tolist() == [0, -1, -1]


def test_atomic_dense_field_with_missing_values_is_left_out_with_a_warning(
    write: Write, caplog: pytest.LogCaptureFixture
) -> None:
    """Real metadata lacks some prices: the field is left out (named in a warning) instead of
    the whole dataset being refused, so the models that never read it still train."""
    write("t/t.inter", INTER)
    good = "item_id:token\tyear:float\tprice:float\n1\t1995\t2.5\n2\t1996\t{}\n3\t1997\t1\n"
    for missing in ("", "nan", "inf", "-inf"):
        item = write("t/t.item", good.format(missing))
        caplog.clear()
        with caplog.at_level("WARNING", logger="recsys.data.readers"):
            features = read_atomic(item.parent).item_features
        assert "price" not in features and features["year"].values[:, 0].tolist() == [
            1995,
            1996,
            1997,
        ], missing
        assert "dense field 'price' has no value for 1 of 3 items" in caplog.text, missing
    # an item without any row: the same
    item = write("t/t.item", "item_id:token\tprice:float\n1\t2.5\n3\t1\n")
    assert "price" not in read_atomic(item.parent).item_features


def test_atomic_duplicates_keep_last_or_first(write: Write) -> None:
    inter = write(
        "d/d.inter",
        "user_id:token\titem_id:token\trating:float\n1\t1\t1\n1\t2\t2\n1\t1\t5\n",
    )
    assert read_atomic(inter).ratings.tolist() == [5.0, 2.0]
    assert read_atomic(inter, keep="first").ratings.tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("user_id\titem_id:token\n", r"field 1 'user_id' is not 'name:type'"),
        ("user_id:token\titem_id:int\n", r"field 'item_id' has unknown type 'int'"),
        ("user_id:token\tuser_id:token\n", r"field 'user_id' appears twice"),
        ("user_id:token\trating:float\n", r"missing required column 'item_id'"),
        ("user_id:token\titem_id:token\trating:token\n", r"field 'rating' has type 'token'"),
    ],
)
def test_atomic_bad_header(write: Write, header: str, message: str) -> None:
    path = write("h/h.inter", header + "1\t2\t3\n")
    with pytest.raises(DataError, match=rf"h\.inter: .*{message}"):
        read_atomic(path)


def test_atomic_empty_and_header_only(write: Write) -> None:
    with pytest.raises(DataError, match=r"e\.inter: empty file"):
        read_atomic(write("e/e.inter", ""))
    with pytest.raises(DataError, match=r"h\.inter: empty file \(no data rows\)"):
        read_atomic(write("h/h.inter", "user_id:token\titem_id:token\n"))


def test_atomic_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "b.inter"
    path.write_bytes(b"user_id:token\titem_id:token\n\xff\xfe\t1\n")
    with pytest.raises(DataError, match=r"b\.inter: cannot decode as utf-8"):
        read_atomic(path)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("1\t1\t4\t10\n2\t1\tfour\t11\n", r"row 2, field 'rating': non-numeric value 'four'"),
        ("1\t1\t4\t10\n\n2\t2\t3\t\n", r"row 3, field 'timestamp': missing value"),
        ("1\t1\t4\tnan\n", r"row 1, field 'timestamp': non-numeric value 'nan'"),
        ("1\t1\t4\tinf\n", r"row 1, field 'timestamp': non-numeric value 'inf'"),
        ("1\t1\t4\t1\n\t2\t3\t4\n", r"row 2, field 'user_id': missing value"),
        ("1\t1\t4\t1\n2\t2\t4\t1\t9\n", r"row 2 \(line 3\): expected 4 fields, found 5"),
        ("1\t1\t4\t1\t9\n", r"row 1 \(line 2\): more fields than the expected 4 fields"),
    ],
)
def test_atomic_bad_rows(write: Write, rows: str, message: str) -> None:
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    path = write("r/r.inter", header + rows)
    with pytest.raises(DataError, match=rf"r\.inter: {message}"):
        read_atomic(path)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("item_id:token\tprice:float\n1\t2\n2\tcheap\n3\t1\n", r"row 2, field 'price': non"),
        ("item_id:token\tv:float_seq\n1\t1 2\n2\t1\n3\t0 0\n", r"row 2, field 'v': 1 values"),
        ("item_id:token\tv:float_seq\n1\t1 2\n2\t1 x\n3\t0 0\n", r"row 2, field 'v'.*'x'"),
        ("item_id:token\tc:token\n1\ta\n2\tb\n1\tc\n", r"row 3, field 'item_id': duplicate id"),
        ("class:token_seq\nAction\n", r"missing required column 'item_id'"),
    ],
)
def test_atomic_bad_item_file(write: Write, item: str, message: str) -> None:
    write("i/i.inter", INTER)
    write("i/i.item", item)
    with pytest.raises(DataError, match=rf"i\.item: {message}"):
        read_atomic(write("i/i.inter", INTER))


def _quote_fields(text: str, fields: Sequence[int]) -> str:
    """``text`` (an atomic file) with the values of the ``fields``-th columns quoted."""
    lines = text.splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    for row in rows:
        for k in fields:
            row[k] = f'"{row[k]}"'
    return "\n".join([lines[0], *("\t".join(row) for row in rows)]) + "\n"


def test_atomic_fields_quoted_throughout_are_refused(write: Write) -> None:
    # RecBole atomic files are not quoted: read as written, "1" would silently be an id
    quoted = _quote_fields(INTER, [0, 1])
    with pytest.raises(DataError) as info:
        read_atomic(write("q/q.inter", quoted))
    message = str(info.value)
    assert message.startswith(str(write("q/q.inter", quoted)))
    assert (
        "every value of fields 'user_id', 'item_id' is enclosed in double quotes "
        '(row 1: "10"); RecBole atomic files are not quoted' in message
    )
    # a quoted float field: named as quoted, not as a non-numeric value
    with pytest.raises(DataError, match=r"r\.inter: every value of field 'rating' is enclosed"):
        read_atomic(write("r/r.inter", _quote_fields(INTER, [2])))
    write("i/i.inter", INTER)
    write("i/i.item", _quote_fields(ITEM, [1]))
    with pytest.raises(DataError, match=r"i\.item: every value of field 'class' is enclosed"):
        read_atomic(write("i/i.inter", INTER))
    # a quoted field the reader ignores is no error
    extra = INTER.replace("timestamp:float\n", "timestamp:float\tnote:token\n", 1)
    extra = "\n".join(
        line if k == 0 else f'{line}\t"n{k}"' for k, line in enumerate(extra.splitlines())
    )
    assert read_atomic(write("x/x.inter", extra + "\n")).n_interactions == 4


def test_atomic_quotes_are_kept_when_a_field_is_partly_quoted(write: Write) -> None:
    ds = read_atomic(write("m/m.inter", 'user_id:token\titem_id:token\n"1"\t1\n2\t"2"\n'))
    assert sorted(ds.users.ids) == ['"1"', "2"]
    assert sorted(ds.items.ids) == ['"2"', "1"]


def _assert_same(a: Dataset, b: Dataset) -> None:
    assert list(a.users.ids) == list(b.users.ids)
    assert list(a.items.ids) == list(b.items.ids)
    assert (a.interactions != b.interactions).nnz == 0
    for attr in ("ratings", "timestamps"):
        x, y = getattr(a, attr), getattr(b, attr)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
    for tables_a, tables_b in (
        (a.item_features, b.item_features),
        (a.user_features, b.user_features),
    ):
        assert sorted(tables_a) == sorted(tables_b)
        for key, ta in tables_a.items():
            tb = tables_b[key]
            assert (ta.kind, ta.vocab) == (tb.kind, tb.vocab), key
            if ta.kind == "multi_hot":
                assert (ta.values != tb.values).nnz == 0, key
            else:
                np.testing.assert_array_equal(ta.values, tb.values, err_msg=key)


def test_write_atomic_round_trip_file(write: Write, tmp_path: Path) -> None:
    write("toy/toy.inter", INTER)
    write("toy/toy.item", ITEM)
    write("toy/toy.user", USER)
    first = read_atomic(tmp_path / "toy")
    inter = write_atomic(first, tmp_path / "out")
    assert inter == tmp_path / "out" / "toy.inter"
    header = (tmp_path / "out" / "toy.item").read_text().splitlines()[0]
    assert "genre" not in header  # the alias is not written twice
    _assert_same(first, read_atomic(inter))


def test_write_atomic_round_trip_synthetic(tmp_path: Path) -> None:
    ds = make_synthetic(60, 40, 600, modalities={"text": 5, "score": 1}, seed=3)
    ds = ds.subset(np.ones(ds.n_interactions, dtype=bool))  # drop items nobody picked
    back = read_atomic(write_atomic(ds, tmp_path, "syn"))
    assert back.name == "syn"
    assert back.item_features["score"].values.shape == (ds.n_items, 1)
    _assert_same(ds, back)


def test_write_atomic_rejects_tabs(tmp_path: Path) -> None:
    ds = make_synthetic(10, 10, 50, modalities={}, genres=False)
    ds.users.ids[0] = "a\tb"
    with pytest.raises(DataError, match="user id 'a\\\\tb' contains a tab"):
        write_atomic(ds, tmp_path)


# ------------------------------------------------------------------------------- movielens


def _ml100k(write: Write, root: str = "ml-100k") -> Path:
    write(f"{root}/u.data", "1\t10\t4\t881250949\n2\t10\t3\t881250950\n2\t20\t5\t881250951\n")
    flags_10 = "|".join("1" if g in ("Action", "Comedy") else "0" for g in ML100K_GENRES)
    flags_20 = "|".join("1" if g == "Drama" else "0" for g in ML100K_GENRES)
    flags_30 = "|".join("0" for _ in ML100K_GENRES)
    write(
        f"{root}/u.item",
        f"10|Toy Story (1995)|01-Jan-1995||http://x|{flags_10}\n"
        f"20|Caf\u00e9 (1996)|||http://y|{flags_20}\n"
        f"30|Unseen (1990)|01-Jan-1990||http://z|{flags_30}\n",
        encoding="latin-1",
    )
    write(f"{root}/u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    return write(f"{root}/u.genre", "".join(f"{g}|{k}\n" for k, g in enumerate(ML100K_GENRES)))


def test_movielens_100k(write: Write, tmp_path: Path) -> None:
    _ml100k(write, "outer/ml-100k")
    ds = read_movielens(tmp_path / "outer")  # finds the release one folder down
    assert (ds.name, ds.n_users, ds.n_items, ds.n_interactions) == ("ml-100k", 2, 2, 3)
    genre = ds.item_features["genre"]
    assert genre.vocab == list(ML100K_GENRES)
    assert [genre.vocab[j] for j in genre.values[[0]].indices] == ["Action", "Comedy"]
    assert [genre.vocab[j] for j in genre.values[[1]].indices] == ["Drama"]
    year = ds.item_features["year"]
    assert year.vocab == ["1995"] and year.values.tolist() == [0, -1]
    assert ds.user_features["occupation"].vocab == ["other", "technician"]
    assert ds.timestamps.tolist() == [881250949.0, 881250950.0, 881250951.0]


def test_movielens_100k_bad_rating(write: Write, tmp_path: Path) -> None:
    _ml100k(write)
    write("ml-100k/u.data", "1\t10\t4\t1\n1\t20\t4.5.1\t2\n")
    with pytest.raises(
        DataError, match=r"u\.data: row 2, field 'rating': non-numeric value '4\.5\.1'"
    ):
        read_movielens(tmp_path / "ml-100k")
    write("ml-100k/u.data", "1\tx10\t4\t1\n")
    with pytest.raises(
        DataError, match=r"u\.data: row 1, field 'item_id': non-numeric value 'x10'"
    ):
        read_movielens(tmp_path / "ml-100k")


def test_movielens_1m(write: Write, tmp_path: Path) -> None:
    write(
        "ml-1m/ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
    )
    write(
        "ml-1m/movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach: A Story (1996)::Animation|Children's|Musical\n",
        encoding="latin-1",
    )
    write("ml-1m/users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    ds = read_movielens(tmp_path / "ml-1m")
    assert list(ds.items.ids) == ["661", "1193"]
    assert ds.ratings.tolist() == [3.0, 5.0, 4.0]
    genre = ds.item_features["genre"]
    assert genre.vocab == ["Animation", "Children's", "Drama", "Musical"]
    assert genre.values.toarray().tolist() == [[1, 1, 0, 1], [0, 0, 1, 0]]
    assert ds.item_features["year"].vocab == ["1975", "1996"]
    assert ds.item_features["year"].values.tolist() == [1, 0]
    assert ds.user_features["gender"].values.tolist() == [0, 1]


def test_movielens_1m_bad_timestamp(write: Write, tmp_path: Path) -> None:
    write("ml-1m/ratings.dat", "1::1193::5::978300760\n1::661::3::soon\n")
    with pytest.raises(
        DataError, match=r"ratings\.dat: row 2, field 'timestamp': non-numeric value 'soon'"
    ):
        read_movielens(tmp_path / "ml-1m")


def test_movielens_csv(write: Write, tmp_path: Path) -> None:
    write(
        "ml-20m/ratings.csv",
        "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,4.0,1112484676\n",
    )
    write(
        "ml-20m/movies.csv",
        "movieId,title,genres\n2,Jumanji (1995),Adventure|Children|Fantasy\n"
        '29,"City of Lost Children, The (Cit\u00e9 des enfants perdus, La) (1995)",'
        "(no genres listed)\n",
    )
    ds = read_movielens(tmp_path / "ml-20m")
    assert ds.name == "ml-20m"
    assert ds.ratings.tolist() == [3.5, 4.0]
    genre = ds.item_features["genre"]
    assert genre.vocab == ["Adventure", "Children", "Fantasy"]
    assert genre.values.toarray().sum(axis=1).tolist() == [3, 0]
    assert ds.item_features["year"].values.tolist() == [0, 0]


def test_movielens_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="no MovieLens ratings file"):
        read_movielens(tmp_path)


# -------------------------------------------------------------------------------- lightgcn


def test_lightgcn(write: Write, tmp_path: Path) -> None:
    write("g/train.txt", "0 0 1 2\n1 2\n2\n10 3 1\n")
    write("g/valid.txt", "0 3\n")
    write("g/test.txt", "0 4\n1 0 1\n")
    ds = read_lightgcn(tmp_path / "g")
    assert list(ds.users.ids) == ["0", "1", "2", "10"]  # user 2 lists no items but exists
    assert list(ds.items.ids) == ["0", "1", "2", "3", "4"]
    where = pairs(ds)
    labels = {k: int(ds.split_labels[v]) for k, v in where.items()}
    assert labels[("0", "0")] == Dataset.SPLIT_TRAIN
    assert labels[("0", "3")] == Dataset.SPLIT_VALID
    assert labels[("0", "4")] == Dataset.SPLIT_TEST
    assert labels[("1", "1")] == Dataset.SPLIT_TEST
    assert labels[("10", "3")] == Dataset.SPLIT_TRAIN
    assert ds.n_interactions == 10
    assert np.diff(ds.interactions.indptr).tolist() == [5, 3, 0, 2]


def test_lightgcn_errors(write: Write, tmp_path: Path) -> None:
    write("g/train.txt", "0 1 2\n1 2 x3\n")
    write("g/test.txt", "0 4\n")
    with pytest.raises(DataError, match=r"train\.txt: row 2, field 'item id'.*'x3'"):
        read_lightgcn(tmp_path / "g")
    write("g/train.txt", "0 1 2\n-1 2\n")
    with pytest.raises(DataError, match=r"train\.txt: row 2, field 'user id'.*'-1'"):
        read_lightgcn(tmp_path / "g")
    write("g/train.txt", "\n")
    with pytest.raises(DataError, match=r"train\.txt: empty file"):
        read_lightgcn(tmp_path / "g")
    write("h/train.txt", "0 1\n")
    with pytest.raises(DatasetNotFoundError, match=r"no test\.txt"):
        read_lightgcn(tmp_path / "h")


# ----------------------------------------------------------------------------------- mmrec


def _mmrec(tmp_path: Path, n_items: int = 3) -> Path:
    folder = tmp_path / "baby"
    folder.mkdir()
    (folder / "baby.inter").write_text(
        "userID\titemID\trating\ttimestamp\tx_label\n"
        "0\t0\t5\t10\t0\n0\t2\t4\t11\t2\n1\t1\t3\t12\t0\n1\t2\t5\t13\t1\n"
    )
    rng = np.random.default_rng(0)
    np.save(folder / "image_feat.npy", rng.standard_normal((n_items, 4)).astype(np.float32))
    np.save(folder / "text_feat.npy", np.arange(n_items * 2, dtype=np.float64).reshape(n_items, 2))
    return folder


def test_mmrec(tmp_path: Path) -> None:
    folder = _mmrec(tmp_path)
    ds = read_mmrec(folder)
    assert (ds.name, ds.n_users, ds.n_items, ds.n_interactions) == ("baby", 2, 3, 4)
    assert ds.split_labels.tolist() == [0, 2, 0, 1]
    assert ds.ratings.tolist() == [5.0, 4.0, 3.0, 5.0]
    assert ds.item_features["text"].values.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert ds.item_features["image"].values.shape == (3, 4)


def test_mmrec_errors(tmp_path: Path) -> None:
    folder = _mmrec(tmp_path, n_items=4)
    with pytest.raises(DataError, match=r"image_feat\.npy: has 4 rows but .*needs 3 rows"):
        read_mmrec(folder)
    bad = np.zeros((3, 2))
    bad[1, 1] = np.nan
    np.save(folder / "image_feat.npy", bad)
    np.save(folder / "text_feat.npy", np.zeros((3, 2)))
    with pytest.raises(DataError, match=r"image_feat\.npy: row 1 .*NaN"):
        read_mmrec(folder)
    np.save(folder / "image_feat.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match=r"image_feat\.npy: cannot read"):
        read_mmrec(folder)
    (folder / "image_feat.npy").unlink()
    (folder / "baby.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t7\n")
    with pytest.raises(DataError, match=r"baby\.inter: row 2, field 'x_label': value 7"):
        read_mmrec(folder)
    (folder / "baby.inter").write_text("userID\titem\tx_label\n0\t0\t0\n")
    with pytest.raises(DataError, match=r"baby\.inter: missing required column 'itemID'"):
        read_mmrec(folder)


def test_an_atomic_inter_without_types_is_not_blamed_on_mmrec_columns(tmp_path: Path) -> None:
    folder = tmp_path / "notypes"
    folder.mkdir()
    inter = folder / "notypes.inter"
    inter.write_text("user_id\titem_id\trating\ttimestamp\n1\t2\t4\t100\n2\t1\t5\t200\n")
    fmt = detect_format(folder)  # no ':type' in the header: taken for MMRec's layout
    with pytest.raises(DataError) as info:
        read_path(folder, fmt)
    message = str(info.value)
    assert message.startswith(f"{inter}: the header (user_id, item_id, rating, timestamp) has ")
    assert "RecBole atomic field names without their types" in message
    assert "e.g. user_id:token item_id:token rating:float timestamp:float" in message
    assert "missing required column" not in message
    # MMRec's own columns still get the plain message
    inter.write_text("userID\titem_id\tx_label\n0\t0\t0\n")
    with pytest.raises(DataError, match=r"notypes\.inter: missing required column 'itemID'"):
        read_mmrec(folder)


# ----------------------------------------------------------------------------------- table


def test_read_table_csv_mapping(write: Write) -> None:
    path = write("t.csv", "uid,iid,stars,when\na,x,4,3\nb,x,2,1\na,y,5,2\n")
    ds = read_table(path, {"user": "uid", "item": "iid", "rating": "stars", "timestamp": "when"})
    assert ds.name == "t"
    assert list(ds.users.ids) == ["a", "b"]
    assert ds.ratings.tolist() == [4.0, 5.0, 2.0]
    assert ds.timestamps.tolist() == [3.0, 2.0, 1.0]


def test_read_table_defaults_and_tsv(write: Write) -> None:
    path = write("t.tsv", "user_id\titem_id\n1\t2\n2\t2\n")
    ds = read_table(path, sep="\t")
    assert ds.ratings is None and ds.timestamps is None and ds.n_interactions == 2


def test_read_table_parquet(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    frame = pd.DataFrame({"user_id": [3, 1, 3], "item_id": [7, 7, 8], "rating": [1.0, 2.0, 3.0]})
    frame.to_parquet(path)
    ds = read_table(path)
    assert list(ds.users.ids) == ["1", "3"] and ds.ratings.tolist() == [2.0, 1.0, 3.0]
    frame.assign(rating=[1.0, None, 3.0]).to_parquet(path)
    with pytest.raises(DataError, match=r"t\.parquet: row 2, field 'rating': missing value"):
        read_table(path)
    path.write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"t\.parquet: cannot read as Parquet"):
        read_table(path)


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        ("", None, r"empty file"),
        ("user_id,item_id\n", None, r"empty file \(no data rows\)"),
        (
            "user,item_id\n1,2\n",
            None,
            r"missing required column 'user_id' \(columns found: user, item_id\)",
        ),
        ("user_id,item_id\n1,2\n", {"rating": "r"}, r"missing required column 'r'"),
        (
            "user_id,item_id,timestamp\n1,2,5\n1,3,later\n",
            None,
            r"row 2, field 'timestamp': non-numeric value 'later'",
        ),
        ("user_id,item_id,rating\n1,2,5\n1,,5\n", None, r"row 2, field 'item_id': missing value"),
        ("user_id,item_id\n1,2\n1,2,3\n", None, r"row 2 \(line 3\): expected 2 fields, found 3"),
        ("user_id,item_id\n1,2\n", {"usr": "u"}, r"unknown column role"),
    ],
)
def test_read_table_errors(write: Write, text: str, columns: dict | None, message: str) -> None:
    path = write("bad.csv", text)
    with pytest.raises(DataError, match=rf"bad\.csv: {message}"):
        read_table(path, columns)


def test_read_table_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"nope\.csv: file not found"):
        read_table(tmp_path / "nope.csv")


def test_table_ids_differing_only_by_spaces_are_a_warning(
    write: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = write("sp.csv", "user_id,item_id\n1,2\n1,3\n2, 2\n")
    with caplog.at_level(logging.WARNING, logger="recsys.data.readers"):
        ds = read_table(path)
    assert ds.n_items == 3  # kept exactly, as before
    assert "field 'item_id': 1 ids differ from another only by surrounding whitespace" in (
        caplog.text
    )
    assert "' 2' and '2'" in caplog.text and "remove the spaces around the ids" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recsys.data.readers"):
        read_table(write("ok.csv", "user_id,item_id\n1, 2\n2,3\n"))  # no clash: no warning
    assert caplog.text == ""
    header = write("hd.csv", "user_id, item_id\n1,2\n")
    with pytest.raises(DataError, match="the header has ' item_id': remove the spaces"):
        read_table(header)


def test_parquet_boolean_ratings_and_datetime_timestamps(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "item_id": [10, 11, 10],
            "rating": [True, False, True],
            "timestamp": pd.to_datetime(
                ["1970-01-01 00:00:10", "2020-01-01 00:00:00", "2020-01-02 00:00:00"]
            ),
        }
    )
    frame.to_parquet(tmp_path / "native.parquet")
    ds = read_table(tmp_path / "native.parquet")
    assert sorted(ds.ratings.tolist()) == [0.0, 1.0, 1.0]
    assert sorted(ds.timestamps.tolist()) == [10.0, 1577836800.0, 1577923200.0]
    frame["timestamp"] = frame["timestamp"].dt.tz_localize("Europe/Berlin")
    frame.to_parquet(tmp_path / "zoned.parquet")
    assert sorted(read_table(tmp_path / "zoned.parquet").timestamps.tolist())[1] == 1577833200.0


def test_text_dates_are_refused_with_what_timestamps_must_be(write: Callable[..., Path]) -> None:
    path = write("dated.csv", "user_id,item_id,timestamp\n1,2,2020-01-01\n")
    with pytest.raises(DataError, match=r"row 1, field 'timestamp': non-numeric value .*Unix"):
        read_table(path)
