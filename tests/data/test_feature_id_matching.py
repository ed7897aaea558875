"""Feature files joined to the interaction ids: a join that matches nothing, or leaves users or
items without features, is reported instead of silently giving empty features."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from recsys.cli import main
from recsys.data.readers import ML100K_GENRES, read_atomic, read_movielens
from recsys.errors import DataError

Write = Callable[..., Path]
READERS = "recsys.data.readers"

INTER = "user_id:token\titem_id:token\n1\t1\n1\t2\n2\t3\n"
"""Users 1, 2 and items 1, 2, 3."""


def _atomic(write: Write, item: str | None = None, user: str | None = None) -> Path:
    inter = write("toy/toy.inter", INTER)
    if item is not None:
        write("toy/toy.item", item)
    if user is not None:
        write("toy/toy.user", user)
    return inter.parent


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    records = caplog.records
    return [r.getMessage() for r in records if r.name == READERS and r.levelname == "WARNING"]


# -------------------------------------------------------------------- (a) no row matches


def test_item_file_with_another_id_scheme_is_an_error(write: Write) -> None:
    folder = _atomic(write, item="item_id:token\tclass:token_seq\nitem_1\tAction\nitem_2\tDrama\n")
    with pytest.raises(DataError) as info:
        read_atomic(folder)
    message = str(info.value)
    assert str(folder / "toy.item") in message
    assert "field 'item_id'" in message
    assert "['item_1', 'item_2']" in message  # ids of the file
    assert "['1', '2', '3']" in message  # ids of the interactions
    assert "same id scheme" in message


def test_user_file_that_matches_no_user_is_an_error(write: Write) -> None:
    folder = _atomic(write, user="user_id:token\tgender:token\n7\tF\n8\tM\n")
    with pytest.raises(DataError, match=r"toy\.user: no id in field 'user_id' matches any user id"):
        read_atomic(folder)


# ------------------------------------------------- (c) ids equal up to whitespace or spelling


def test_ids_with_trailing_spaces_are_an_error_with_a_hint(write: Write) -> None:
    folder = _atomic(write, item="item_id:token\tyear:token\n1 \t1995\n2 \t1996\n3 \t1997\n")
    with pytest.raises(DataError) as info:
        read_atomic(folder)
    message = str(info.value)
    assert str(folder / "toy.item") in message and "field 'item_id'" in message
    assert "['1 ', '2 ', '3 ']" in message
    assert "3 of the unmatched ids match once surrounding whitespace is stripped" in message
    assert "remove the spaces" in message


def test_zero_padded_ids_are_an_error_with_a_hint(write: Write) -> None:
    # a dense field would otherwise fail with "no row for item id(s)", which hides the cause
    folder = _atomic(write, item="item_id:token\tprice:float\n01\t1\n02\t2\n03\t3\n")
    with pytest.raises(DataError) as info:
        read_atomic(folder)
    message = str(info.value)
    assert "toy.item: no id in field 'item_id' matches any item id" in message
    assert "match when read as integers (e.g. '01' in this file, '1' in the interactions)" in (
        message
    )


def test_some_ids_with_spaces_are_a_warning_with_a_hint(
    write: Write, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _atomic(write, item="item_id:token\tclass:token_seq\n1\tAction\n2 \tDrama\n3\tWar\n")
    with caplog.at_level(logging.WARNING, logger=READERS):
        ds = read_atomic(folder)
    assert ds.item_features["class"].values.toarray().sum(axis=1).tolist() == [1, 0, 1]
    (message,) = _warnings(caplog)
    assert message.startswith(f"{folder / 'toy.item'}: 1 of 3 items have no row, e.g. ['2']")
    assert "1 of 3 rows name items without interactions (dropped), e.g. ['2 ']" in message
    assert "match once surrounding whitespace is stripped" in message


# --------------------------------------------------- (b) some rows unmatched, (d) no row


def test_items_without_a_row_are_a_warning(write: Write, caplog: pytest.LogCaptureFixture) -> None:
    folder = _atomic(write, item="item_id:token\tclass:token_seq\tyear:token\n1\tAction\t1995\n")
    with caplog.at_level(logging.WARNING, logger=READERS):
        ds = read_atomic(folder)
    assert ds.item_features["year"].values.tolist() == [0, -1, -1]  # -1: missing
    assert ds.item_features["class"].values.toarray()[:, 0].tolist() == [1, 0, 0]  # empty
    (message,) = _warnings(caplog)
    assert message == (
        f"{folder / 'toy.item'}: 2 of 3 items have no row, e.g. ['2', '3'] "
        f"(features missing: empty, or -1 for a category)"
    )


def test_unmatched_rows_and_items_without_a_row_are_one_warning(
    write: Write, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _atomic(
        write,
        item="item_id:token\tclass:token_seq\n1\tAction\n2\tDrama\n98\tWar\n99\tHorror\n",
        user="user_id:token\tgender:token\n1\tF\n",
    )
    with caplog.at_level(logging.WARNING, logger=READERS):
        read_atomic(folder)
    item_message, user_message = _warnings(caplog)
    assert item_message == (
        f"{folder / 'toy.item'}: 1 of 3 items have no row, e.g. ['3'] (features missing: "
        f"empty, or -1 for a category); 2 of 4 rows name items without interactions "
        f"(dropped), e.g. ['98', '99']"
    )
    assert user_message.startswith(f"{folder / 'toy.user'}: 1 of 2 users have no row")


def test_a_catalogue_with_extra_items_is_only_a_debug_message(
    write: Write, caplog: pytest.LogCaptureFixture
) -> None:
    # every item has its row; rows for items nobody interacted with are the normal case
    item = "item_id:token\tclass:token_seq\n" + "".join(f"{k}\tAction\n" for k in range(1, 11))
    folder = _atomic(write, item=item)
    with caplog.at_level(logging.DEBUG, logger=READERS):
        ds = read_atomic(folder)
    assert ds.n_items == 3
    assert _warnings(caplog) == []
    debug = [r.getMessage() for r in caplog.records if r.levelname == "DEBUG"]
    assert debug == [f"{folder / 'toy.item'}: 7 rows name items without interactions (dropped)"]


# --------------------------------------------------------------------------- MovieLens


def _flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in ML100K_GENRES)


def test_movielens_100k_item_file_that_matches_nothing_is_an_error(
    write: Write, tmp_path: Path
) -> None:
    write("ml-100k/u.data", "1\t10\t4\t1\n2\t20\t3\t2\n")
    write(
        "ml-100k/u.item",
        f"1|A (1995)|01-Jan-1995||x|{_flags('Drama')}\n2|B (1996)|||y|{_flags('War')}\n",
    )
    with pytest.raises(DataError) as info:
        read_movielens(tmp_path / "ml-100k")
    message = str(info.value)
    assert "u.item: no id in field 'item_id' matches any item id" in message
    assert "['1', '2']" in message and "['10', '20']" in message


def test_movielens_100k_users_without_a_row_are_a_warning(
    write: Write, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write("ml-100k/u.data", "1\t10\t4\t1\n2\t10\t3\t2\n3\t10\t3\t3\n")
    write("ml-100k/u.user", "1|24|M|technician|85711\n")
    with caplog.at_level(logging.WARNING, logger=READERS):
        ds = read_movielens(tmp_path / "ml-100k")
    assert ds.user_features["age"].values.tolist() == [0, -1, -1]
    (message,) = _warnings(caplog)
    assert message.startswith(f"{tmp_path / 'ml-100k' / 'u.user'}: 2 of 3 users have no row")


def test_movielens_1m_movies_that_match_nothing_are_an_error(
    write: Write, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write("ml-1m/ratings.dat", "1::1193::5::978300760\n2::661::3::978302109\n")
    write("ml-1m/users.dat", "1::F::1::10::48067\n")
    write("ml-1m/movies.dat", "1::Toy Story (1995)::Animation\n2::Jumanji (1995)::Adventure\n")
    with pytest.raises(DataError, match=r"movies\.dat: no id in field 'item_id' matches"):
        read_movielens(tmp_path / "ml-1m")
    write("ml-1m/movies.dat", "1193::Cuckoo (1975)::Drama\n661::Peach (1996)::Animation\n")
    with caplog.at_level(logging.WARNING, logger=READERS):
        read_movielens(tmp_path / "ml-1m")
    (message,) = _warnings(caplog)
    assert message.startswith(f"{tmp_path / 'ml-1m' / 'users.dat'}: 1 of 2 users have no row")


def test_movielens_csv_movies_with_spaces_are_an_error_with_a_hint(
    write: Write, tmp_path: Path
) -> None:
    write("ml-20m/ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,1\n1,29,4.0,2\n")
    write("ml-20m/movies.csv", "movieId,title,genres\n 2,Jumanji (1995),Adventure\n 29,C,Drama\n")
    with pytest.raises(DataError) as info:
        read_movielens(tmp_path / "ml-20m")
    message = str(info.value)
    assert "movies.csv: no id in field 'movieId' matches any item id" in message
    assert "match once surrounding whitespace is stripped (e.g. ' 2' in this file, '2'" in message


# -------------------------------------------------------------------------------- the CLI


def test_train_reports_an_unmatched_item_file_without_a_run(
    write: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _atomic(write, item="item_id:token\tclass:token_seq\n01\tAction\n02\tDrama\n")
    runs = tmp_path / "runs"
    code = main(
        ["train", "--model", "pop", "--data-path", str(folder), "--no-tracking", "-o", str(runs)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "toy.item: no id in field 'item_id' matches any item id" in err
    assert "match when read as integers" in err
    assert "Traceback" not in err
    assert not runs.exists()


# ---------------------------------------------------------------- the shipped default data


def test_default_ml100k_loads_without_a_feature_warning(caplog: pytest.LogCaptureFixture) -> None:
    # a guard rather than a new behaviour: RecBole's ml-100k files match id for id
    from recsys.data.catalog import DataConfig, load_dataset

    with caplog.at_level(logging.DEBUG, logger=READERS):
        ds = load_dataset(DataConfig(name="ml-100k"))
    assert (ds.n_users, ds.n_items) == (943, 1682)
    assert [r.getMessage() for r in caplog.records if r.name == READERS] == []
