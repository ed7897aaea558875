"""Readers that turn interaction files into a :class:`~recsys.data.dataset.Dataset`.

Every reader is vectorised with pandas and numpy (no Python loop over interactions), passes
rows to :meth:`Dataset.from_arrays` in file order (so a duplicated user-item pair keeps its
*last* occurrence by default; ``keep="first"`` keeps the first instead), and turns malformed
input into a :class:`~recsys.errors.DataError` that names the file and, where it applies, the
1-based data row (the line number counted after any header) and the field.

Formats:

* :func:`read_atomic` -- RecBole atomic files (``.inter`` / ``.item`` / ``.user``);
* :func:`read_movielens` -- the GroupLens MovieLens releases (100k, 1M, 10M, 20M, 25M, latest);
* :func:`read_lightgcn` -- ``train.txt`` / ``test.txt`` adjacency lists (Gowalla, Yelp2018, ...);
* :func:`read_mmrec` -- MMRec's ``<name>.inter`` with ``x_label`` plus ``*_feat.npy`` matrices;
* :func:`read_table` -- any CSV / TSV / Parquet table with a column mapping.

:func:`write_atomic` writes a dataset back to atomic files that :func:`read_atomic` reads into
an identical dataset.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.dataset import Dataset, FeatureTable, Vocabulary
from recsys.errors import DataError, DatasetNotFoundError

log = logging.getLogger(__name__)

Keep = Literal["last", "first"]

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
"""Field types understood in the header of a RecBole atomic file."""

ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
"""The 19 genre flags of ML-100k's ``u.item``, in column order (used when ``u.genre`` is absent)."""

_GENRE_ALIASES = ("class", "genre")
_PARSER_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_INTEGER_TEXT = r"[+-]?\d+(?:\.0*)?"
_INT64_MAX_DIGITS = str(np.iinfo(np.int64).max)
_INT64_MIN_DIGITS = str(np.iinfo(np.int64).min).removeprefix("-")
_EXACT_FLOAT_INT = 2.0**53
"""Integers up to this magnitude are the largest that float64 holds without rounding."""

# reasons returned by _parse_int64, turned into messages by _int_problem
_INT_OK, _INT_MISSING, _INT_NON_NUMERIC, _INT_FRACTION, _INT_RANGE, _INT_INEXACT = range(6)

__all__ = [
    "ATOMIC_TYPES",
    "atomic_header",
    "canonical_float_ids",
    "read_atomic",
    "read_lightgcn",
    "read_mmrec",
    "read_movielens",
    "read_table",
    "write_atomic",
]


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def _natural_order(values: Sequence[object] | np.ndarray | pd.Index) -> np.ndarray:
    """Permutation that sorts ids numerically when they are all integers, else as strings."""
    raw = np.asarray(values)
    if len(raw) == 0:
        return np.zeros(0, dtype=np.int64)
    if raw.dtype.kind in "iu":
        return np.argsort(raw, kind="stable")
    arr = raw.astype(object)
    as_num = pd.to_numeric(pd.Series(arr), errors="coerce").to_numpy(dtype=np.float64)
    if np.isfinite(as_num).all() and np.all(as_num == np.round(as_num)):
        if np.abs(as_num).max() >= _EXACT_FLOAT_INT:
            # as floats, ids above 2**53 can tie or swap: order them by their exact value
            exact, reason = _parse_int64(pd.Series(arr.astype(str)))
            if not reason.any():
                return np.argsort(exact, kind="stable")
        return np.argsort(as_num, kind="stable")
    return np.argsort(arr.astype(str), kind="stable")


def _encode(raw: np.ndarray | pd.Series, name: str) -> tuple[Vocabulary, np.ndarray]:
    """Vocabulary (ids in natural order) and the index of every raw value."""
    codes, uniques = pd.factorize(np.asarray(raw), sort=False)
    if len(codes) and codes.min() < 0:
        # factorize codes a missing value as -1, which would index the last id; the readers
        # name the file and row before this, so this only guards against a reader that did not
        raise DataError(f"{name} ids include a missing value")
    order = _natural_order(uniques)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    ids = np.asarray(uniques, dtype=object)[order]
    return Vocabulary(ids, name), rank[codes]


def _lookup(vocab: Vocabulary, raw: np.ndarray | pd.Series) -> np.ndarray:
    """Index of each raw id in ``vocab``; -1 for ids it does not hold (vectorised)."""
    keys = pd.Index(vocab.ids.astype(str))
    return keys.get_indexer(pd.Index(np.asarray(raw).astype(str)))


def _check_keep(keep: str) -> None:
    if keep not in ("last", "first"):
        raise DataError(f"keep must be 'last' or 'first', got {keep!r}")


def _build(
    name: str,
    user_raw: np.ndarray,
    item_raw: np.ndarray,
    *,
    keep: Keep,
    ratings: np.ndarray | None = None,
    timestamps: np.ndarray | None = None,
    split_labels: np.ndarray | None = None,
    source: str = "",
    extra_users: np.ndarray | None = None,
) -> Dataset:
    """Encode raw ids and build the dataset; ``keep="first"`` feeds rows in reverse order.

    ``extra_users`` are raw user ids to include even without interactions (LightGCN lines
    that list no items).
    """
    _check_keep(keep)
    all_users = user_raw if extra_users is None else np.concatenate([user_raw, extra_users])
    users, user_index = _encode(all_users, "user")
    user_index = user_index[: len(user_raw)]
    items, item_index = _encode(item_raw, "item")
    order = slice(None, None, -1) if keep == "first" else slice(None)

    def ordered(arr: np.ndarray | None) -> np.ndarray | None:
        return None if arr is None else np.asarray(arr)[order]

    return Dataset.from_arrays(
        name,
        users,
        items,
        user_index[order],
        item_index[order],
        ratings=ordered(ratings),
        timestamps=ordered(timestamps),
        split_labels=ordered(split_labels),
        source=source,
    )


def _with_features(
    ds: Dataset,
    item_features: dict[str, FeatureTable] | None = None,
    user_features: dict[str, FeatureTable] | None = None,
) -> Dataset:
    """Attach feature tables (already aligned with the vocabularies) and re-validate."""
    if item_features:
        ds.item_features.update(item_features)
    if user_features:
        ds.user_features.update(user_features)
    ds.validate()
    return ds


def _read_frame(
    path: Path,
    names: list[str],
    *,
    sep: str,
    skiprows: int = 0,
    numeric: Sequence[str] = (),
    integer: Sequence[str] = (),
    usecols: Sequence[str] | None = None,
    encoding: str = "utf-8",
    engine: Literal["c", "python"] = "c",
    refuse_quoted: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a delimited file without a header into a frame indexed by 1-based data row.

    Text columns stay strings (empty string for an empty field); ``numeric`` columns become
    float64 and ``integer`` columns int64. A non-numeric, empty or non-finite value raises
    :class:`DataError` naming the file, the first bad row, the field and the value. Blank lines
    are skipped but still counted, so row numbers match the file. Quotes are text; a field of
    ``refuse_quoted`` whose every value is wrapped in double quotes is a :class:`DataError`
    (see :func:`_refuse_quoted`).
    """
    wanted = list(usecols) if usecols is not None else list(names)
    typed = {c: (np.float64 if c in numeric else np.int64 if c in integer else str) for c in wanted}
    kwargs = {
        "sep": sep,
        "header": None,
        "names": names,
        "usecols": None if usecols is None else wanted,
        "skiprows": skiprows,
        "keep_default_na": False,
        "na_filter": False,
        "skip_blank_lines": False,
        "quoting": csv.QUOTE_NONE,
        "encoding": encoding,
        "engine": engine,
        "index_col": False,
    }
    try:
        frame = _drop_blank(_guarded_read(path, skiprows, dtype=typed, **kwargs))
        if all(np.isfinite(frame[col].to_numpy()).all() for col in numeric):
            _refuse_quoted(frame, refuse_quoted, path)
            return frame
    except _TypedReadFailed:
        pass
    # something did not parse: read as text to name the first bad row, field and value
    frame = _drop_blank(_guarded_read(path, skiprows, dtype=str, **kwargs))
    _refuse_quoted(frame, refuse_quoted, path)
    for col in wanted:
        if col in numeric or col in integer:
            frame[col] = _to_number(frame[col], path, col, integer=col in integer)
    return frame


def _refuse_quoted(frame: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    """Raise :class:`DataError` naming the file and the text fields of ``columns`` whose values
    are *all* wrapped in double quotes (as a CSV writer quotes them): read as written, the
    quotes would silently become part of every id. Only the first value is looked at for
    other columns, so a file without quotes costs one comparison per column; a field that is
    only partly quoted is read as written (a quote is an ordinary character there)."""
    quoted: list[str] = []
    for col in columns:
        values = frame[col]
        if values.dtype.kind in "fiub" or values.empty:
            continue
        first = values.iloc[0]
        if not (isinstance(first, str) and len(first) >= 2 and first[0] == first[-1] == '"'):
            continue
        text = values.astype(str)
        if (text.str.startswith('"') & text.str.endswith('"') & (text.str.len() >= 2)).all():
            quoted.append(col)
    if quoted:
        first = frame[quoted[0]].iloc[0]
        raise DataError(
            f"{path}: every value of field{'' if len(quoted) == 1 else 's'} "
            f"{', '.join(repr(c) for c in quoted)} is enclosed in double quotes (row "
            f"{frame.index[0]}: {first}); RecBole atomic files are not quoted, so the quotes "
            "would become part of the values: remove them from the file"
        )


class _TypedReadFailed(Exception):
    """Internal: the fast typed parse failed; re-read as strings to locate the bad value."""


def _guarded_read(path: Path, header_lines: int, **kwargs: object) -> pd.DataFrame:
    """``pd.read_csv`` with its failures turned into :class:`DataError` naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot decode as {kwargs.get('encoding')}: {exc.reason}") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: empty file (no data rows)") from exc
    except pd.errors.ParserWarning as exc:
        names = kwargs.get("names")
        expected = f"expected {len(names)} fields" if isinstance(names, list) else "header"
        raise DataError(
            f"{path}: row 1 (line {header_lines + 1}): more fields than the {expected}"
        ) from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: {_parser_message(str(exc), header_lines)}") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        if kwargs.get("dtype") is str:
            raise DataError(f"{path}: cannot parse: {exc}") from exc
        raise _TypedReadFailed from exc
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return frame


def _parser_message(message: str, header_lines: int) -> str:
    match = _PARSER_LINE.search(message)
    if not match:
        return f"malformed file: {message.strip()}"
    expected, line, saw = (int(g) for g in match.groups())
    row = line - header_lines
    return f"row {row} (line {line}): expected {expected} fields, found {saw}"


def _drop_blank(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop rows whose every field is empty (blank lines); keep the row numbering."""
    if frame.empty:
        return frame
    blank = np.ones(len(frame), dtype=bool)
    for col in frame.columns:
        values = frame[col]
        if values.dtype.kind in "fiu":
            return frame
        blank &= (values == "").to_numpy()
    return frame[~blank] if blank.any() else frame


def _to_number(
    series: pd.Series,
    path: Path | str,
    field: str,
    *,
    integer: bool,
    missing_as_nan: bool = False,
) -> pd.Series:
    """Convert a string column to numbers, raising on the first bad row (named, with value).

    ``integer`` columns become int64 without passing through float64, so every digit of a
    large id survives; a value outside the int64 range is an error, not a wrapped number.
    With ``missing_as_nan`` (a feature column, which may lack values), an empty, ``nan`` or
    ``inf`` value becomes NaN instead of an error; other text is still one.
    """
    if integer:
        exact, reason = _parse_int64(series)
        if reason.any():
            pos = int(np.argmax(reason != _INT_OK))
            what = _int_problem(int(reason[pos]), str(series.iloc[pos]))
            raise DataError(f"{path}: row {series.index[pos]}, field {field!r}: {what}")
        return pd.Series(exact, index=series.index, name=series.name)
    text = series.astype(str).str.strip() if missing_as_nan else series
    values = np.array(pd.to_numeric(text, errors="coerce"), dtype=np.float64)
    bad = ~np.isfinite(values)
    if missing_as_nan:
        bad &= ~text.str.lower().isin(["", "nan", "inf", "-inf", "+inf"]).to_numpy()
        values[~np.isfinite(values)] = np.nan
    if bad.any():
        pos = int(np.argmax(bad))
        raw = str(series.iloc[pos])
        what = "missing value" if raw == "" else f"non-numeric value {raw!r}"
        raise DataError(f"{path}: row {series.index[pos]}, field {field!r}: {what}")
    return pd.Series(values, index=series.index, name=series.name)


def _parse_int64(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Exact int64 of every string in ``text`` and, per value, why it is not one (0 if it is).

    Plain integer text (optionally with a ``.0`` fraction) is parsed digit for digit; other
    numeric text such as ``1e3`` is accepted only up to 2**53, where float64 is still exact.
    """
    fast = pd.to_numeric(text, errors="coerce")
    if fast.dtype == np.int64:  # every value plain integer text within int64: parsed exactly
        return fast.to_numpy(), np.zeros(len(text), dtype=np.int8)
    text = text.astype(str).str.strip()
    exact = np.zeros(len(text), dtype=np.int64)
    reason = np.full(len(text), _INT_OK, dtype=np.int8)
    plain = text.str.fullmatch(_INTEGER_TEXT).to_numpy(dtype=bool)
    whole = text.str.replace(r"\.0*$", "", regex=True)
    digits = whole.str.replace(r"^[+-]?0*", "", regex=True)
    negative = whole.str.startswith("-").to_numpy(dtype=bool)
    length = digits.str.len().to_numpy()
    # equal-length digit strings compare like the numbers they spell
    fits = (length < len(_INT64_MAX_DIGITS)) | (
        (length == len(_INT64_MAX_DIGITS))
        & np.where(negative, digits <= _INT64_MIN_DIGITS, digits <= _INT64_MAX_DIGITS)
    )
    reason[plain & ~fits] = _INT_RANGE
    ok = plain & fits
    if ok.any():
        exact[ok] = whole[ok].to_numpy(dtype=str).astype(np.int64)
    other = ~plain
    if other.any():
        values = pd.to_numeric(text[other], errors="coerce").to_numpy(dtype=np.float64)
        converted, why = _whole_floats(values)
        why[(text[other] == "").to_numpy(dtype=bool)] = _INT_MISSING
        exact[other] = converted
        reason[other] = why
    return exact, reason


def _whole_floats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 of float64 ``values`` and, per value, why it is not a whole number that float64
    holds exactly (0 if it is; NaN and inf count as non-numeric)."""
    reason = np.full(len(values), _INT_OK, dtype=np.int8)
    finite = np.isfinite(values)
    reason[~finite] = _INT_NON_NUMERIC
    reason[finite & (values != np.round(values))] = _INT_FRACTION
    reason[(reason == _INT_OK) & (np.abs(values) > _EXACT_FLOAT_INT)] = _INT_INEXACT
    return np.where(reason == _INT_OK, values, 0).astype(np.int64), reason


def _int_problem(reason: int, raw: str) -> str:
    """What is wrong with ``raw`` as an integer, for a :class:`DataError` message."""
    if reason == _INT_MISSING:
        return "missing value"
    if reason == _INT_NON_NUMERIC:
        return f"non-numeric value {raw!r}"
    if reason == _INT_FRACTION:
        return f"non-integer value {raw!r}"
    if reason == _INT_RANGE:
        return f"value {raw!r} does not fit a 64-bit integer"
    return f"value {raw!r} is too large to read exactly as a float; write it as a plain integer"


def canonical_float_ids(series: pd.Series, path: Path | str, field: str) -> pd.Series:
    """Ids from a field typed ``float``, as canonical integer text (``10.0`` -> ``10``).

    Token fields keep ids as written, so a float-typed field must render whole numbers the
    same way for its ids to match them; a fractional id would match nothing.
    """
    if series.dtype.kind == "f":
        values = series.to_numpy(dtype=np.float64)
        exact, reason = _whole_floats(values)
        reason[np.isnan(values)] = _INT_MISSING
    else:
        exact, reason = _parse_int64(series.astype(str))
    if reason.any():
        pos = int(np.argmax(reason != _INT_OK))
        raw = series.iloc[pos]
        raw_text = raw if isinstance(raw, str) else str(float(raw))
        what = _int_problem(int(reason[pos]), raw_text)
        if reason[pos] == _INT_FRACTION:
            what += " (ids in a float field must be whole numbers)"
        elif reason[pos] == _INT_INEXACT and not isinstance(raw, str):
            what = (
                f"value {raw_text!r} is above 2**53, where a float column cannot hold an id "
                f"exactly; store ids as integers or strings"
            )
        raise DataError(f"{path}: row {series.index[pos]}, field {field!r}: {what}")
    return pd.Series(exact.astype(str).astype(object), index=series.index, name=series.name)


def _require_text(frame: pd.DataFrame, path: Path | str, fields: Sequence[str]) -> None:
    """Raise on the first empty value in any of ``fields``."""
    for field in fields:
        values = frame[field]
        if values.dtype.kind in "fiu":
            continue
        empty = (values.astype(str) == "").to_numpy()
        if empty.any():
            raise DataError(
                f"{path}: row {frame.index[np.argmax(empty)]}, field {field!r}: missing value"
            )


def _require_rows(frame: pd.DataFrame, path: Path | str) -> None:
    if len(frame) == 0:
        raise DataError(f"{path}: empty file (no data rows)")


def _find_file(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` in ``folder`` or in one of its immediate subfolders."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    if folder.is_dir():
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            for name in names:
                if (sub / name).is_file():
                    return sub / name
    return None


# ---------------------------------------------------------------------------------------------
# feature tables
# ---------------------------------------------------------------------------------------------


def _feature_rows(
    vocab: Vocabulary, raw: np.ndarray | pd.Series, path: Path | str, field: str
) -> np.ndarray:
    """Row of ``vocab`` for each id of a feature file (-1: no interactions), checking the join.

    Users and items are those of the interactions, so a feature row whose id matches none of
    them is dropped, and a user or item without a row gets empty features (no multi-hot token,
    categorical code -1; dense fields raise later). A join that goes wrong this way is loud:

    * no row matches at all: :class:`DataError` naming the file and ``field``, with example ids
      from both sides and a hint when the ids would match once surrounding whitespace is
      stripped (``'1 '`` vs ``'1'``) or when read as integers (``'01'`` vs ``'1'``);
    * otherwise, when some users/items have no row: one ``log.warning`` for the file, with
      counts and examples of those and of the unmatched rows, and the same hint;
    * rows that are unmatched while every user/item has its row are the common case of a
      catalogue listing more items than were interacted with (or of interactions sampled from
      a larger set): logged at debug level only, whatever their share, and not searched for
      near matches (that costs seconds on a million ids).
    """
    rows = _lookup(vocab, raw)
    if len(rows) == 0:
        return rows
    text = pd.Series(np.asarray(raw).astype(str), dtype=object)
    unmatched = rows < 0
    have = np.zeros(len(vocab), dtype=bool)
    have[rows[~unmatched]] = True
    lacking = np.flatnonzero(~have)
    suspect = unmatched.any() and (unmatched.all() or len(lacking) > 0)
    hint = _near_matches(vocab, text[unmatched]) if suspect else ""
    owner = vocab.name
    if unmatched.all():
        raise DataError(
            f"{path}: no id in field {field!r} matches any {owner} id of the interactions, so "
            f"every row would be dropped (ids in this file, e.g. {_examples(text)}; {owner} ids "
            f"in the interactions, e.g. {_examples(vocab.ids)}){hint or _NO_MATCH_HINT}"
        )
    parts = []
    if len(lacking):
        parts.append(
            f"{len(lacking)} of {len(vocab)} {owner}s have no row, e.g. "
            f"{_examples(vocab.raw(lacking))} (features missing: empty, or -1 for a category)"
        )
    n_unmatched = int(unmatched.sum())
    if n_unmatched and len(lacking):
        parts.append(
            f"{n_unmatched} of {len(rows)} rows name {owner}s without interactions (dropped), "
            f"e.g. {_examples(text[unmatched])}"
        )
    if parts:
        log.warning("%s: %s%s", path, "; ".join(parts), hint)
    elif n_unmatched:
        log.debug("%s: %d rows name %ss without interactions (dropped)", path, n_unmatched, owner)
    return rows


_NO_MATCH_HINT = "; check that both files use the same id scheme"
_STRIP = "remove the spaces around the ids"
_SAME_SPELLING = "write the ids the same way in both files"


def _examples(values: Sequence[object] | np.ndarray | pd.Series, k: int = 3) -> str:
    """The first ``k`` of ``values`` as a list of quoted strings (quotes show spaces)."""
    return repr([str(v) for v in list(np.asarray(values, dtype=object)[:k])])


def _canonical_ids(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Ids with surrounding whitespace stripped, and those also spelled as integers."""
    stripped = text.astype(str).str.strip()
    exact, reason = _parse_int64(stripped)
    plain = stripped.to_numpy(dtype=object)
    return plain, np.where(reason == _INT_OK, exact.astype(str).astype(object), plain)


def _near_matches(vocab: Vocabulary, unmatched: pd.Series) -> str:
    """A hint saying how many ``unmatched`` ids match ``vocab`` once canonicalised, or ""."""
    vocab_stripped, vocab_int = _canonical_ids(pd.Series(vocab.ids, dtype=object))
    stripped, as_int = _canonical_ids(unmatched)
    checks = (
        (vocab_stripped, stripped, "once surrounding whitespace is stripped", _STRIP),
        (vocab_int, as_int, "when read as integers", _SAME_SPELLING),
    )
    raw = unmatched.to_numpy(dtype=object)
    for vocab_keys, keys, how, fix in checks:  # whitespace first: integers strip it too
        index = pd.Index(vocab_keys)
        first = ~index.duplicated()
        at = index[first].get_indexer(pd.Index(keys))
        near = at >= 0
        if near.any():
            k = int(np.argmax(near))
            partner = vocab.ids[first][at[k]]
            return (
                f"; {int(near.sum())} of the unmatched ids match {how} (e.g. {str(raw[k])!r} "
                f"in this file, {str(partner)!r} in the interactions): {fix}"
            )
    return ""


def _split_tokens(series: pd.Series, sep: str | None = " ") -> tuple[np.ndarray, np.ndarray]:
    """Positions (0-based, into ``series``) and tokens of a space-separated column."""
    parts = pd.Series(series.to_numpy(), dtype=object).astype(str).str.split(sep)
    exploded = parts.explode()
    positions = exploded.index.to_numpy(dtype=np.int64)
    tokens = exploded.to_numpy(dtype=object)
    keep = pd.notna(tokens) & (tokens != "")
    return positions[keep], tokens[keep].astype(str)


def _multi_hot(
    name: str, positions: np.ndarray, tokens: np.ndarray, rows: np.ndarray, n_rows: int
) -> FeatureTable:
    """A 0/1 CSR table: token ``tokens[k]`` set in row ``rows[positions[k]]`` (rows < 0 dropped)."""
    target = rows[positions]
    keep = target >= 0
    target, tokens = target[keep], tokens[keep]
    codes, uniques = pd.factorize(tokens, sort=False)
    order = _natural_order(uniques)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    matrix = sp.csr_array(
        (np.ones(len(codes), dtype=np.float32), (target, rank[codes])),
        shape=(n_rows, len(uniques)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return FeatureTable(name, "multi_hot", matrix, [str(t) for t in np.asarray(uniques)[order]])


def _categorical(name: str, values: pd.Series, rows: np.ndarray, n_rows: int) -> FeatureTable:
    """Integer codes into a vocabulary in natural order; -1 where missing or empty."""
    raw = values.to_numpy(dtype=object).astype(str)
    present = (rows >= 0) & (raw != "")
    codes, uniques = pd.factorize(raw[present], sort=False)
    order = _natural_order(uniques)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    out = np.full(n_rows, -1, dtype=np.int64)
    out[rows[present]] = rank[codes]
    return FeatureTable(name, "categorical", out, [str(t) for t in np.asarray(uniques)[order]])


def _dense_rows(
    name: str,
    values: np.ndarray,
    rows: np.ndarray,
    vocab: Vocabulary,
    path: Path | str,
) -> FeatureTable | None:
    """Place ``values[k]`` at row ``rows[k]``, or None, with a warning, when a row of ``vocab``
    has no row in the file or a missing (empty, ``nan``, ``inf``) value: a dense feature needs
    a value for every row, and real metadata often lacks some (prices), so the field is left
    out rather than the whole dataset refused (the models that do not read it still train)."""
    n_rows = len(vocab)
    out = np.zeros((n_rows, values.shape[1]), dtype=np.float32)
    filled = np.zeros(n_rows, dtype=bool)
    keep = rows >= 0
    out[rows[keep]] = values[keep]
    filled[rows[keep]] = np.isfinite(values[keep]).all(axis=1)
    if not filled.all():
        missing = vocab.raw(np.flatnonzero(~filled)[:5]).tolist()
        log.warning(
            "%s: dense field %r has no value for %d of %d %ss (ids %s...): left out of the "
            "features; give every %s with interactions a value to use it",
            path, name, int((~filled).sum()), n_rows, vocab.name, missing, vocab.name,
        )  # fmt: skip
        return None
    return FeatureTable(name, "dense", out)


def _float32_overflow(values: np.ndarray) -> tuple[int, float] | None:
    """(row, value) of the first finite value of a 2-d ``values`` that is inf as float32."""
    with np.errstate(over="ignore"):
        over = np.isinf(values.astype(np.float32)) & np.isfinite(values)
    if not over.any():
        return None
    row, col = np.argwhere(over)[0]
    return int(row), float(values[row, col])


def _overflow_message(value: float) -> str:
    return f"value {value:g} overflows float32 (largest magnitude {np.finfo(np.float32).max:.4g})"


def _check_float32(values: np.ndarray, index: pd.Index, path: Path | str, field: str) -> None:
    """Raise on the first row of ``values`` (row labels ``index``) that float32 cannot hold.

    Dense features are stored as float32; unchecked, such a value would turn into inf and be
    reported later as if the file held an infinite value.
    """
    found = _float32_overflow(values)
    if found is not None:
        row, value = found
        raise DataError(f"{path}: row {index[row]}, field {field!r}: {_overflow_message(value)}")


def _float_seq(series: pd.Series, path: Path | str, field: str) -> np.ndarray:
    """Parse a ``float_seq`` column (space-separated floats, equal length in every row)."""
    fast = _float_seq_fast(series)
    if fast is not None:
        return fast
    # locate the problem: token by token
    positions, tokens = _split_tokens(series)
    numbers = pd.to_numeric(pd.Series(tokens), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(
            f"{path}: row {series.index[positions[k]]}, field {field!r}: "
            f"non-numeric value {str(tokens[k])!r}"
        )
    lengths = np.bincount(positions, minlength=len(series))
    if len(lengths) and (lengths != lengths[0]).any():
        k = int(np.argmax(lengths != lengths[0]))
        raise DataError(
            f"{path}: row {series.index[k]}, field {field!r}: {lengths[k]} values where row "
            f"{series.index[0]} has {lengths[0]} (float_seq rows must have equal length)"
        )
    width = int(lengths[0]) if len(lengths) else 0
    return numbers.reshape(len(series), width)


def _float_seq_fast(series: pd.Series) -> np.ndarray | None:
    """The C parser's reading of a well-formed ``float_seq`` column; None if anything is off."""
    if len(series) == 0:
        return None
    text = "\n".join(series.astype(str).tolist())
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=" ",
            header=None,
            dtype=np.float64,
            na_filter=False,
            skip_blank_lines=False,
            quoting=csv.QUOTE_NONE,
            index_col=False,
        )
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    values = frame.to_numpy(dtype=np.float64)
    if values.shape[0] != len(series) or not np.isfinite(values).all():
        return None
    return values


# ---------------------------------------------------------------------------------------------
# RecBole atomic files
# ---------------------------------------------------------------------------------------------


def atomic_header(path: Path, encoding: str) -> list[tuple[str, str]]:
    """Parse ``name:type`` header fields; raise :class:`DataError` on anything else."""
    try:
        with open(path, "rb") as fh:
            line = fh.readline().decode(encoding)
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot decode the header as {encoding}: {exc.reason}") from exc
    line = line.removeprefix("\ufeff")
    line = line.rstrip("\r\n")
    if not line.strip():
        raise DataError(f"{path}: empty file (no header line)")
    fields: list[tuple[str, str]] = []
    for k, token in enumerate(line.split("\t"), start=1):
        name, colon, kind = token.strip().rpartition(":")
        if not colon or not name:
            raise DataError(
                f"{path}: unreadable header: field {k} {token!r} is not 'name:type' "
                f"(type one of {', '.join(ATOMIC_TYPES)})"
            )
        if kind not in ATOMIC_TYPES:
            raise DataError(
                f"{path}: unreadable header: field {name!r} has unknown type {kind!r} "
                f"(expected one of {', '.join(ATOMIC_TYPES)})"
            )
        if any(name == seen for seen, _ in fields):
            raise DataError(f"{path}: unreadable header: field {name!r} appears twice")
        fields.append((name, kind))
    return fields


def _find_field(fields: list[tuple[str, str]], base: str) -> str | None:
    for name, _ in fields:
        if name.lower() == base:
            return name
    return None


def _read_atomic_frame(
    path: Path,
    fields: list[tuple[str, str]],
    wanted: Sequence[str],
    encoding: str,
    ids: Sequence[str] = (),
    feature_floats: bool = False,
) -> pd.DataFrame:
    """The ``wanted`` fields of an atomic file (one quoted throughout is an error, see
    :func:`read_atomic`); ``ids`` fields as non-empty id text. With ``feature_floats``,
    ``float`` fields stay text here, for :func:`_to_number` with ``missing_as_nan`` (a
    feature may lack values; ratings and timestamps may not).

    An id field typed ``float`` is read as text, not as float64, so large ids keep every digit
    and whole numbers come out as ``10``, the way a ``token`` field spells them.
    """
    kinds = dict(fields)
    frame = _read_frame(
        path,
        [name for name, _ in fields],
        sep="\t",
        skiprows=1,
        numeric=[
            name
            for name in wanted
            if kinds[name] == "float" and name not in ids and not feature_floats
        ],
        encoding=encoding,
        refuse_quoted=wanted,
    )
    _require_rows(frame, path)
    frame = frame[list(wanted)]
    _require_text(frame, path, ids)
    for name in ids:
        if kinds[name] == "float":
            frame[name] = canonical_float_ids(frame[name], path, name)
    return frame


def _atomic_features(
    path: Path, vocab: Vocabulary, id_base: str, encoding: str
) -> dict[str, FeatureTable]:
    """Feature tables from an ``.item`` or ``.user`` file, aligned with ``vocab``."""
    fields = atomic_header(path, encoding)
    id_field = _find_field(fields, id_base)
    if id_field is None:
        raise DataError(
            f"{path}: missing required column {id_base!r} "
            f"(header has {', '.join(name for name, _ in fields)})"
        )
    frame = _read_atomic_frame(
        path, fields, [name for name, _ in fields], encoding, ids=[id_field], feature_floats=True
    )
    _require_unique_ids(frame[id_field], path, id_field)
    ids = frame[id_field].to_numpy(dtype=object).astype(str)
    rows = _feature_rows(vocab, ids, path, id_field)
    n_rows = len(vocab)
    tables: dict[str, FeatureTable] = {}
    for name, kind in fields:
        if name == id_field:
            continue
        column = frame[name]
        if kind == "token_seq":
            positions, tokens = _split_tokens(column)
            tables[name] = _multi_hot(name, positions, tokens, rows, n_rows)
        elif kind == "token":
            tables[name] = _categorical(name, column, rows, n_rows)
        else:
            if kind == "float":
                values = _to_number(column, path, name, integer=False, missing_as_nan=True)
                values = values.to_numpy()[:, None]
            else:
                values = _float_seq(column, path, name)
            _check_float32(values, frame.index, path, name)
            table = _dense_rows(name, values, rows, vocab, path)
            if table is not None:
                tables[name] = table
    for alias in _GENRE_ALIASES:
        if alias in tables and "genre" not in tables:
            src = tables[alias]
            tables["genre"] = FeatureTable("genre", src.kind, src.values, src.vocab)
    return tables


def read_atomic(
    folder_or_inter_path: str | os.PathLike[str],
    name: str | None = None,
    *,
    keep: Keep = "last",
    encoding: str = "utf-8",
) -> Dataset:
    """Read RecBole atomic files ``<name>.inter`` (+ ``<name>.item``, ``<name>.user``).

    Args:
        folder_or_inter_path: a folder holding ``<name>.inter`` or the ``.inter`` file itself.
        name: the dataset name (file stem); defaults to the file stem or the folder name, or to
            the only ``.inter`` file in the folder.
        keep: which duplicate of a user-item pair to keep, by position in the file.
        encoding: text encoding of the files.

    The ``.inter`` header must have ``user_id`` and ``item_id`` fields (any type suffix) and
    may have ``rating`` and ``timestamp`` (type ``float``); other fields are ignored. In
    ``.item`` / ``.user`` files every field becomes a feature table: ``token_seq`` a multi-hot
    matrix over space-separated tokens, ``token`` a categorical code (-1 when empty or when the
    id is absent from the file), ``float`` a one-column dense matrix, ``float_seq`` a dense
    matrix. A ``class`` field is also exposed as ``genre``. Rows for ids without interactions
    are dropped; an id with interactions but no row gets zeros (multi-hot) or -1
    (categorical); a dense field (``float``, ``float_seq``) with no row or an empty, ``nan``
    or ``inf`` value for such an id is left out of the features, with a warning naming it.
    A file whose ids match no interaction id is a :class:`DataError` (with a hint when whitespace or
    integer spelling explains it), and ids without a row are logged as a warning; see
    :func:`_feature_rows` for the rule.

    Atomic files are not quoted: a ``"`` is an ordinary character, part of the value (as in
    RecBole's files). A field of any of the three files whose *every* value is wrapped in
    double quotes (as a CSV writer quotes them) is a :class:`DataError` naming the file and
    the field, rather than ids that silently keep their quotes (``"1"`` would not be ``1``)
    or quotes removed here but kept by the other readers of the same file (the text
    modality's); a field only partly quoted is read as written.

    Returns:
        Dataset: with ``ratings`` / ``timestamps`` when the ``.inter`` file has them.
    """
    _check_keep(keep)
    inter = _atomic_inter_path(Path(folder_or_inter_path), name)
    folder, stem = inter.parent, inter.name[: -len(".inter")]
    fields = atomic_header(inter, encoding)
    user_field = _find_field(fields, "user_id")
    item_field = _find_field(fields, "item_id")
    for base, found in (("user_id", user_field), ("item_id", item_field)):
        if found is None:
            raise DataError(
                f"{inter}: missing required column {base!r} "
                f"(header has {', '.join(n for n, _ in fields)})"
                + (
                    "; atomic files are tab-separated"
                    if _delimiter_hint([n for n, _ in fields])
                    else ""
                )
            )
    assert user_field is not None and item_field is not None
    optional = {base: _find_field(fields, base) for base in ("rating", "timestamp")}
    kinds = dict(fields)
    for found in optional.values():
        if found is not None and kinds[found] != "float":
            raise DataError(
                f"{inter}: unreadable header: field {found!r} has type {kinds[found]!r}, "
                f"expected 'float'"
            )
    wanted = [user_field, item_field] + [f for f in optional.values() if f is not None]
    frame = _read_atomic_frame(inter, fields, wanted, encoding, ids=[user_field, item_field])
    rating_field, time_field = optional["rating"], optional["timestamp"]
    ds = _build(
        stem,
        frame[user_field].to_numpy(dtype=object),
        frame[item_field].to_numpy(dtype=object),
        keep=keep,
        ratings=None if rating_field is None else frame[rating_field].to_numpy(),
        timestamps=None if time_field is None else frame[time_field].to_numpy(),
        source=str(inter),
    )
    item_path, user_path = folder / f"{stem}.item", folder / f"{stem}.user"
    items = (
        _atomic_features(item_path, ds.items, "item_id", encoding) if item_path.is_file() else {}
    )
    users = (
        _atomic_features(user_path, ds.users, "user_id", encoding) if user_path.is_file() else {}
    )
    return _with_features(ds, items, users)


def _atomic_inter_path(path: Path, name: str | None) -> Path:
    if path.is_file():
        if not path.name.endswith(".inter"):
            raise DataError(f"{path}: an atomic interaction file must end in .inter")
        return path
    if not path.is_dir():
        raise DatasetNotFoundError(f"{path}: no such file or folder")
    candidate = path / f"{name or path.name}.inter"
    if candidate.is_file():
        return candidate
    inters = sorted(path.glob("*.inter"))
    if name is None and len(inters) == 1:
        return inters[0]
    found = ", ".join(p.name for p in inters) or "none"
    raise DatasetNotFoundError(
        f"{path}: no {candidate.name} in this folder (.inter files found: {found})"
    )


def write_atomic(ds: Dataset, folder: str | os.PathLike[str], name: str | None = None) -> Path:
    """Write ``ds`` as RecBole atomic files ``<name>.inter`` (+ ``.item``, ``.user``).

    Multi-hot features become ``token_seq`` fields, categorical ``token``, one-column dense
    ``float`` and wider dense ``float_seq``; the ``genre`` alias of a ``class`` feature is not
    written twice. Floats are written with enough digits to read back exactly, so
    ``read_atomic(write_atomic(ds, folder))`` equals ``ds`` whenever every user and item has an
    interaction and ids sort the way the readers order them (numerically when all ids are
    integers). ``split_labels`` are not written. Each file is written to a temporary file and
    moved into place.

    Returns:
        Path: the ``.inter`` file.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or ds.name
    users, items = ds.coo()
    columns = {
        "user_id:token": _checked_text(ds.users.ids, "user id")[users],
        "item_id:token": _checked_text(ds.items.ids, "item id")[items],
    }
    if ds.ratings is not None:
        columns["rating:float"] = _format_floats(ds.ratings)
    if ds.timestamps is not None:
        columns["timestamp:float"] = _format_floats(ds.timestamps)
    inter = out / f"{stem}.inter"
    _write_table(inter, columns)
    for suffix, vocab, tables, id_name in (
        ("item", ds.items, ds.item_features, "item_id"),
        ("user", ds.users, ds.user_features, "user_id"),
    ):
        if tables:
            cols = {f"{id_name}:token": _checked_text(vocab.ids, f"{suffix} id")}
            for key, table in tables.items():
                if key == "genre" and _is_alias(tables, key):
                    continue
                cols.update(_feature_columns(key, table))
            _write_table(out / f"{stem}.{suffix}", cols)
    return inter


def _is_alias(tables: dict[str, FeatureTable], key: str) -> bool:
    table = tables[key]
    for other in _GENRE_ALIASES:
        src = tables.get(other)
        if other == key or src is None or src.kind != table.kind or src.vocab != table.vocab:
            continue
        if src.values is table.values:
            return True
        if table.kind == "multi_hot" and (src.values != table.values).nnz == 0:
            return True
        if table.kind != "multi_hot" and np.array_equal(src.values, table.values):
            return True
    return False


def _checked_text(values: np.ndarray, what: str) -> np.ndarray:
    text = np.asarray(values, dtype=object).astype(str)
    bad = pd.Series(text).str.contains(r"[\t\r\n]", regex=True).to_numpy()
    if bad.any():
        raise DataError(f"{what} {str(text[np.argmax(bad)])!r} contains a tab or newline")
    return text


def _format_floats(values: np.ndarray) -> np.ndarray:
    """Shortest strings that read back to exactly the same value in the array's float dtype."""
    arr = np.asarray(values)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr.astype(str).astype(object)


def _feature_columns(key: str, table: FeatureTable) -> dict[str, np.ndarray]:
    if table.kind == "multi_hot":
        matrix = sp.csr_array(table.values)
        vocab = np.asarray(_checked_text(np.asarray(table.vocab or [], dtype=object), "token"))
        spaced = pd.Series(vocab).str.contains(" ", regex=False).to_numpy()
        if spaced.any():
            token = str(vocab[np.argmax(spaced)])
            raise DataError(f"feature {key!r}: token {token!r} contains a space")
        matrix.sort_indices()
        tokens = vocab[matrix.indices].tolist()
        bounds = matrix.indptr.tolist()
        text = [" ".join(tokens[a:b]) for a, b in itertools.pairwise(bounds)]
        return {f"{key}:token_seq": np.asarray(text, dtype=object)}
    if table.kind == "categorical":
        vocab = _checked_text(np.asarray(table.vocab or [], dtype=object), "token")
        codes = np.asarray(table.values, dtype=np.int64)
        text = np.where(codes >= 0, vocab[np.maximum(codes, 0)] if len(vocab) else "", "")
        return {f"{key}:token": text.astype(object)}
    values = np.asarray(table.values)
    if values.ndim == 1:
        values = values[:, None]
    if values.shape[1] == 1:
        return {f"{key}:float": _format_floats(values[:, 0])}
    fmt = "%.9g" if values.dtype == np.float32 else "%.17g"  # enough digits to read back exactly
    buffer = io.StringIO()
    np.savetxt(buffer, values, fmt=fmt, delimiter=" ")
    return {f"{key}:float_seq": np.asarray(buffer.getvalue().splitlines(), dtype=object)}


def _write_table(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Write a tab-separated table with a typed header, atomically."""
    from recsys.fileio import atomic_open

    frame = pd.DataFrame({k: np.asarray(v, dtype=object) for k, v in columns.items()})
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, sep="\t", index=False, quoting=csv.QUOTE_NONE, lineterminator="\n")


# ---------------------------------------------------------------------------------------------
# MovieLens
# ---------------------------------------------------------------------------------------------


def read_movielens(folder: str | os.PathLike[str], *, keep: Keep = "last") -> Dataset:
    """Read a GroupLens MovieLens release from its folder (or a folder one level above it, or
    one of its files).

    Detects ``u.data`` (+ ``u.item``, ``u.user``, ``u.genre``; ML-100k, tab/pipe separated,
    latin-1), ``ratings.dat`` (+ ``movies.dat``, ``users.dat``; ML-1M/10M, ``::`` separated,
    latin-1) or ``ratings.csv`` (+ ``movies.csv``; ML-20M/25M/latest). Item features: ``genre``
    (multi-hot) and ``year`` (categorical release year; -1 when unknown). User features, where
    the release has them: ``age``, ``gender``, ``occupation``, ``zip_code`` (categorical).
    Feature rows are joined to the rated ids as in :func:`read_atomic`: a movie or user file
    that matches no rated id is a :class:`DataError`, and rated ids without a row are logged
    as a warning (their features are empty, or -1).
    """
    root = Path(folder)
    names = ["u.data", "ratings.dat", "ratings.csv"]
    if root.is_file():
        # the file given, not the first ratings file of its folder
        if root.name not in names:
            archive = root.suffix.lower() in (".zip", ".gz", ".tgz", ".tar", ".bz2", ".xz")
            raise DataError(
                f"{root}: the movielens format reads u.data, ratings.dat or ratings.csv (or "
                f"the folder of a MovieLens release), not this file"
                + ("; extract the archive and pass its folder" if archive else "")
            )
        found: Path | None = root
    else:
        found = _find_file(root, names)
    if found is None:
        raise DatasetNotFoundError(
            f"{root}: no MovieLens ratings file (u.data, ratings.dat or ratings.csv) in this "
            f"folder or its subfolders"
        )
    if found.name == "u.data":
        return _read_ml100k(found.parent, keep)
    if found.name == "ratings.dat":
        return _read_ml_dat(found.parent, keep)
    return _read_ml_csv(found.parent, keep)


_RATING_NAMES = ["user_id", "item_id", "rating", "timestamp"]


def _ratings_dataset(frame: pd.DataFrame, name: str, path: Path, keep: Keep) -> Dataset:
    _require_rows(frame, path)
    return _build(
        name,
        frame["user_id"].to_numpy(),
        frame["item_id"].to_numpy(),
        keep=keep,
        ratings=frame["rating"].to_numpy(),
        timestamps=frame["timestamp"].to_numpy(),
        source=str(path),
    )


def _year_from(text: pd.Series, pattern: str) -> pd.Series:
    return text.astype(str).str.extract(pattern, expand=False).fillna("")


def _read_ml100k(folder: Path, keep: Keep) -> Dataset:
    path = folder / "u.data"
    frame = _read_frame(
        path,
        _RATING_NAMES,
        sep="\t",
        integer=["user_id", "item_id"],
        numeric=["rating", "timestamp"],
        encoding="latin-1",
    )
    ds = _ratings_dataset(frame, folder.name or "movielens", path, keep)
    items: dict[str, FeatureTable] = {}
    item_path = folder / "u.item"
    if item_path.is_file():
        genres = list(ML100K_GENRES)
        genre_path = folder / "u.genre"
        if genre_path.is_file():
            gframe = _read_frame(
                genre_path, ["name", "index"], sep="|", integer=["index"], encoding="latin-1"
            )
            genres = list(gframe.sort_values("index")["name"].astype(str))
        names = ["item_id", "title", "release_date", "video_date", "url"]
        names += [f"g{k}" for k in range(len(genres))]
        iframe = _read_frame(
            item_path,
            names,
            sep="|",
            integer=["item_id", *names[5:]],
            encoding="latin-1",
        )
        _require_rows(iframe, item_path)
        _require_unique_ids(iframe["item_id"], item_path, "item_id")
        rows = _feature_rows(ds.items, iframe["item_id"].to_numpy(), item_path, "item_id")
        flags = iframe[names[5:]].to_numpy(dtype=np.int64)
        present = rows >= 0
        matrix = np.zeros((ds.n_items, len(genres)), dtype=np.float32)
        matrix[rows[present]] = (flags[present] > 0).astype(np.float32)
        items["genre"] = FeatureTable("genre", "multi_hot", sp.csr_array(matrix), genres)
        year = _year_from(iframe["release_date"], r"(\d{4})\s*$")
        items["year"] = _categorical("year", year, rows, ds.n_items)
    users: dict[str, FeatureTable] = {}
    user_path = folder / "u.user"
    if user_path.is_file():
        names = ["user_id", "age", "gender", "occupation", "zip_code"]
        uframe = _read_frame(user_path, names, sep="|", integer=["user_id"], encoding="latin-1")
        _require_unique_ids(uframe["user_id"], user_path, "user_id")
        rows = _feature_rows(ds.users, uframe["user_id"].to_numpy(), user_path, "user_id")
        for field in names[1:]:
            users[field] = _categorical(field, uframe[field], rows, ds.n_users)
    return _with_features(ds, items, users)


def _genre_table(genres: pd.Series, rows: np.ndarray, n_rows: int) -> FeatureTable:
    text = genres.astype(str).replace("(no genres listed)", "")
    positions, tokens = _split_tokens(text, sep="|")
    return _multi_hot("genre", positions, tokens, rows, n_rows)


def _read_ml_dat(folder: Path, keep: Keep) -> Dataset:
    path = folder / "ratings.dat"
    # "u::i::r::t" split on ":" gives empty fields between the values; the C parser is fast.
    frame = _read_frame(
        path,
        ["user_id", "_a", "item_id", "_b", "rating", "_c", "timestamp"],
        sep=":",
        usecols=_RATING_NAMES,
        integer=["user_id", "item_id"],
        numeric=["rating", "timestamp"],
        encoding="latin-1",
    )
    ds = _ratings_dataset(frame, folder.name or "movielens", path, keep)
    items: dict[str, FeatureTable] = {}
    movie_path = folder / "movies.dat"
    if movie_path.is_file():
        mframe = _read_frame(
            movie_path,
            ["item_id", "title", "genres"],
            sep="::",
            integer=["item_id"],
            encoding="latin-1",
            engine="python",
        )
        _require_unique_ids(mframe["item_id"], movie_path, "item_id")
        rows = _feature_rows(ds.items, mframe["item_id"].to_numpy(), movie_path, "item_id")
        items["genre"] = _genre_table(mframe["genres"], rows, ds.n_items)
        year = _year_from(mframe["title"], r"\((\d{4})\)\s*$")
        items["year"] = _categorical("year", year, rows, ds.n_items)
    users: dict[str, FeatureTable] = {}
    user_path = folder / "users.dat"
    if user_path.is_file():
        names = ["user_id", "gender", "age", "occupation", "zip_code"]
        uframe = _read_frame(
            user_path, names, sep="::", integer=["user_id"], encoding="latin-1", engine="python"
        )
        _require_unique_ids(uframe["user_id"], user_path, "user_id")
        rows = _feature_rows(ds.users, uframe["user_id"].to_numpy(), user_path, "user_id")
        for field in names[1:]:
            users[field] = _categorical(field, uframe[field], rows, ds.n_users)
    return _with_features(ds, items, users)


def _read_ml_csv(folder: Path, keep: Keep) -> Dataset:
    path = folder / "ratings.csv"
    ds = read_table(
        path,
        {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"},
        keep=keep,
        config_key=None,
    )
    ds.name = folder.name or "movielens"
    movie_path = folder / "movies.csv"
    items: dict[str, FeatureTable] = {}
    if movie_path.is_file():
        mframe = _read_csv_table(movie_path, ",")
        _require_columns(mframe, movie_path, ["movieId", "title", "genres"])
        _require_unique_ids(mframe["movieId"], movie_path, "movieId")
        rows = _feature_rows(ds.items, mframe["movieId"].to_numpy(), movie_path, "movieId")
        items["genre"] = _genre_table(mframe["genres"], rows, ds.n_items)
        year = _year_from(mframe["title"], r"\((\d{4})\)\s*$")
        items["year"] = _categorical("year", year, rows, ds.n_items)
    return _with_features(ds, items)


# ---------------------------------------------------------------------------------------------
# LightGCN adjacency lists
# ---------------------------------------------------------------------------------------------


def _read_adjacency(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users of each pair, items of each pair, every user id on a line) from ``user i1 i2``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot decode as utf-8: {exc.reason}") from exc
    tokens = np.asarray(text.replace("\n", " \n ").split(" "), dtype=object)
    newline = tokens == "\n"
    line_of = np.cumsum(newline) + 1  # 1-based line number of every token
    keep = ~newline & (tokens != "")
    values, lines = tokens[keep].astype(str), line_of[keep]
    if len(values) == 0:
        raise DataError(f"{path}: empty file (no data rows)")
    ids, reason = _parse_int64(pd.Series(values))
    bad = (reason != _INT_OK) | (ids < 0)
    if bad.any():
        k = int(np.argmax(bad))
        first = k == 0 or lines[k - 1] != lines[k]
        field = "user id" if first else "item id"
        what = f"not a non-negative integer: {str(values[k])!r}"
        if reason[k] in (_INT_RANGE, _INT_INEXACT):
            what = _int_problem(int(reason[k]), str(values[k]))
        raise DataError(f"{path}: row {lines[k]}, field {field!r}: {what}")
    starts = np.ones(len(ids), dtype=bool)
    starts[1:] = lines[1:] != lines[:-1]
    line_user = ids[starts]
    owner = line_user[np.cumsum(starts) - 1]
    return owner[~starts], ids[~starts], line_user


def read_lightgcn(folder: str | os.PathLike[str], *, keep: Keep = "last") -> Dataset:
    """Read LightGCN-style ``train.txt`` / ``test.txt`` (+ optional ``valid.txt``).

    Each line is a user id followed by the ids of the items it interacted with, separated by
    spaces; a line may list no items. ``split_labels`` are 0 for train, 1 for valid and 2 for
    test rows. Ids are non-negative integers and keep their numeric order as indices.
    """
    root = Path(folder)
    if root.is_file():
        root = root.parent
    train = _find_file(root, ["train.txt"])
    if train is None:
        raise DatasetNotFoundError(f"{root}: no train.txt in this folder or its subfolders")
    base = train.parent
    test = base / "test.txt"
    if not test.is_file():
        raise DatasetNotFoundError(f"{base}: train.txt found but no test.txt next to it")
    parts = [(train, Dataset.SPLIT_TRAIN)]
    if (base / "valid.txt").is_file():
        parts.append((base / "valid.txt", Dataset.SPLIT_VALID))
    parts.append((test, Dataset.SPLIT_TEST))
    users, items, labels, line_users = [], [], [], []
    for path, label in parts:
        u, i, lu = _read_adjacency(path)
        users.append(u)
        items.append(i)
        labels.append(np.full(len(u), label, dtype=np.int8))
        line_users.append(lu)
    all_users = np.concatenate(users)
    if len(all_users) == 0:
        raise DataError(f"{base}: train/test files list no interactions")
    return _build(
        base.name or "lightgcn",
        all_users,
        np.concatenate(items),
        keep=keep,
        split_labels=np.concatenate(labels),
        source=str(base),
        extra_users=np.concatenate(line_users),
    )


# ---------------------------------------------------------------------------------------------
# MMRec
# ---------------------------------------------------------------------------------------------

_MMREC_FEATURES = {"image": "image_feat.npy", "text": "text_feat.npy"}


def read_mmrec(
    folder: str | os.PathLike[str], name: str | None = None, *, keep: Keep = "last"
) -> Dataset:
    """Read an MMRec dataset folder: ``<name>.inter`` plus optional feature matrices.

    ``<name>.inter`` is tab-separated with a plain header: ``userID``, ``itemID``, optional
    ``rating`` and ``timestamp``, and ``x_label`` (0 train, 1 valid, 2 test) which becomes
    ``split_labels``. ``image_feat.npy`` and ``text_feat.npy``, when present, hold one row per
    item id (raw item id ``k`` is row ``k``) and become dense item features ``image`` and
    ``text``; their row count must equal the largest item id plus one. A header with
    RecBole's untyped names (``user_id``, ``item_id``, no ``x_label``) is a :class:`DataError`
    that shows the typed atomic header it lacks.
    """
    root = Path(folder)
    if root.is_file():
        inter = root
    else:
        inter = _find_file(root, [f"{name or root.name}.inter"])
        if inter is None:
            inters = sorted(root.glob("*.inter")) if root.is_dir() else []
            if name is None and len(inters) == 1:
                inter = inters[0]
            else:
                found = ", ".join(p.name for p in inters) or "none"
                raise DatasetNotFoundError(
                    f"{root}: no {name or root.name}.inter in this folder (.inter files: {found})"
                )
    frame = _read_csv_table(inter, "\t")
    typed = _typed_atomic_header(list(frame.columns))
    if typed is not None:
        raise DataError(
            f"{inter}: the header ({', '.join(str(c) for c in frame.columns)}) has RecBole "
            "atomic field names without their types, so the file was read as an MMRec .inter "
            "(which needs userID, itemID and x_label); a RecBole atomic header gives every "
            f"field a type, e.g. {typed} (tab-separated)"
        )
    _require_columns(frame, inter, ["userID", "itemID", "x_label"])
    user = _to_number(frame["userID"].astype(str), inter, "userID", integer=True)
    item = _to_number(frame["itemID"].astype(str), inter, "itemID", integer=True)
    for field, ids in (("userID", user), ("itemID", item)):
        # an item id is a row of the feature matrices, where -1 would silently be the last row
        negative = (ids < 0).to_numpy()
        if negative.any():
            k = int(np.argmax(negative))
            raise DataError(
                f"{inter}: row {frame.index[k]}, field {field!r}: negative id {ids.iloc[k]} "
                f"(MMRec ids count from 0)"
            )
    label = _to_number(frame["x_label"].astype(str), inter, "x_label", integer=True).to_numpy()
    bad = (label < 0) | (label > 2)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(
            f"{inter}: row {frame.index[k]}, field 'x_label': value {label[k]} is not 0, 1 or 2"
        )
    ratings = _optional_number(frame, inter, "rating")
    timestamps = _optional_number(frame, inter, "timestamp")
    ds = _build(
        inter.name[: -len(".inter")],
        user.to_numpy(),
        item.to_numpy(),
        keep=keep,
        ratings=ratings,
        timestamps=timestamps,
        split_labels=label.astype(np.int8),
        source=str(inter),
    )
    item_ids = ds.items.ids.astype(np.int64)
    n_expected = int(item_ids.max()) + 1
    features: dict[str, FeatureTable] = {}
    for key, filename in _MMREC_FEATURES.items():
        path = inter.parent / filename
        if not path.is_file():
            continue
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
            # numpy's own message for such a file speaks of pickled data, which misleads
            raise DataError(f"{path}: is not a .npy file (no numpy header; save it with np.save)")
        try:
            matrix = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: cannot read as a numpy array: {exc}") from exc
        if isinstance(matrix, np.lib.npyio.NpzFile):
            matrix.close()
            raise DataError(
                f"{path}: is an .npz archive, not a single .npy array (save it with np.save)"
            )
        if matrix.dtype.kind not in "biuf":
            if matrix.dtype.kind in "US":
                raise DataError(f"{path}: holds strings, not numbers")
            raise DataError(f"{path}: holds {matrix.dtype} values, not real numbers")
        if matrix.ndim != 2 or matrix.shape[1] == 0:
            raise DataError(
                f"{path}: expected a 2-d matrix with at least one column, got shape {matrix.shape}"
            )
        if matrix.shape[0] != n_expected:
            raise DataError(
                f"{path}: has {matrix.shape[0]} rows but {inter.name} has item ids 0..."
                f"{n_expected - 1}, so it needs {n_expected} rows (row k = item id k)"
            )
        values = np.asarray(matrix[item_ids], dtype=np.float64)
        bad_rows = ~np.isfinite(values).all(axis=1)
        if bad_rows.any():
            k = int(np.argmax(bad_rows))
            raise DataError(f"{path}: row {item_ids[k]} (item id {item_ids[k]}) has NaN or inf")
        found = _float32_overflow(values)
        if found is not None:
            k, value = found
            raise DataError(
                f"{path}: row {item_ids[k]} (item id {item_ids[k]}): {_overflow_message(value)}"
            )
        features[key] = FeatureTable(key, "dense", values.astype(np.float32))
    return _with_features(ds, features)


# ---------------------------------------------------------------------------------------------
# CSV / Parquet
# ---------------------------------------------------------------------------------------------

DEFAULT_COLUMNS = {
    "user": "user_id",
    "item": "item_id",
    "rating": "rating",
    "timestamp": "timestamp",
}
"""Default column mapping of :func:`read_table`."""


def _typed_atomic_header(columns: Sequence[object]) -> str | None:
    """The typed header (``user_id:token item_id:token ...``) of a RecBole atomic file whose
    header lacks the ``:type`` suffixes, when ``columns`` look like one (``user_id`` and
    ``item_id``, but neither MMRec's ``userID`` nor ``x_label``); else None."""
    names = [str(c) for c in columns]
    lower = {n.lower() for n in names}
    if not {"user_id", "item_id"} <= lower or "userID" in names or "x_label" in names:
        return None
    floats = ("rating", "timestamp")
    return " ".join(f"{n}:{'float' if n.lower() in floats else 'token'}" for n in names)


def _read_csv_table(path: Path, sep: str) -> pd.DataFrame:
    """A delimited file with a header row, every column as strings, indexed by data row."""
    frame = _guarded_read(
        path,
        1,
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        skip_blank_lines=False,
        index_col=False,
        encoding="utf-8",
    )
    frame = _drop_blank(frame)
    _require_rows(frame, path)
    _require_unique_header(path, sep)
    return frame


def _require_unique_header(path: Path, sep: str) -> None:
    """Raise when the header names a column twice: pandas would rename the second copy
    (``user_id.1``) and the reader would silently use the first."""
    if len(sep) != 1:
        return
    with open(path, encoding="utf-8", newline="") as fh:
        line = fh.readline().removeprefix("\ufeff")
    names = [name.strip() for name in next(csv.reader([line], delimiter=sep), [])]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: the header names column {name!r} twice")
        seen.add(name)


def _delimiter_hint(columns: Sequence[object]) -> str:
    """A hint when a header read as one column holds another delimiter."""
    if len(columns) != 1:
        return ""
    names = {",": "comma", ";": "semicolon", "|": "pipe", "\t": "tab", " ": "space"}
    for mark, name in names.items():
        if mark in str(columns[0]):
            return f"; the header looks {name}-separated: set data.sep (--set sep={name})"
    return ""


def _require_unique_ids(ids: pd.Series, path: Path | str, field: str) -> None:
    """Raise on the first repeated id of a feature file: later rows would silently win."""
    text = ids.to_numpy(dtype=object).astype(str)
    dup = pd.Index(text).duplicated()
    if dup.any():
        k = int(np.argmax(dup))
        raise DataError(
            f"{path}: row {ids.index[k]}, field {field!r}: duplicate id {str(text[k])!r}"
        )


def _require_columns(
    frame: pd.DataFrame, path: Path, names: Sequence[str], hints: Sequence[str] = ()
) -> None:
    """Raise on the first of ``names`` missing from ``frame``, adding ``hints[k]`` (when
    given) for ``names[k]`` unless the header looks split on the wrong delimiter."""
    for k, col in enumerate(names):
        if col not in frame.columns:
            have = ", ".join(str(c) for c in frame.columns)
            spaced = [str(c) for c in frame.columns if str(c).strip() == col]
            hint = (
                _delimiter_hint(list(frame.columns))
                or (
                    f"; the header has {spaced[0]!r}: remove the spaces around the column names"
                    if spaced
                    else ""
                )
                or (hints[k] if k < len(hints) else "")
            )
            raise DataError(
                f"{path}: missing required column {col!r} (columns found: {have}){hint}"
            )


def _optional_number(
    frame: pd.DataFrame, path: Path, col: str | None, *, timestamp: bool = False
) -> np.ndarray | None:
    """The numbers of column ``col`` (None when there is none) as float64.

    A boolean column (Parquet) becomes 1/0 and a datetime column Unix seconds (a time zone is
    honoured, a naive time is taken as UTC). Text must be numbers; for a ``timestamp`` column
    the error says that dates are not parsed.
    """
    if col is None or col not in frame.columns:
        return None
    series = frame[col]
    if series.dtype.kind == "b":
        return series.to_numpy(dtype=np.float64)
    if series.dtype.kind == "M":
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        seconds = (series - pd.Timestamp("1970-01-01")).dt.total_seconds()
        series = seconds.astype(np.float64)
    if series.dtype.kind in "fiu":
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            k = int(np.argmax(bad))
            raise DataError(f"{path}: row {frame.index[k]}, field {col!r}: missing value")
        return values
    try:
        return _to_number(series.astype(str), path, col, integer=False).to_numpy()
    except DataError as exc:
        if not timestamp or "non-numeric" not in str(exc):
            raise
        raise DataError(
            f"{exc}; timestamps must be numbers (e.g. Unix seconds), text dates are not parsed"
        ) from exc


def read_table(
    path: str | os.PathLike[str],
    columns: dict[str, str] | None = None,
    sep: str = ",",
    *,
    keep: Keep = "last",
    config_key: str | None = "data.columns",
) -> Dataset:
    """Read interactions from a CSV/TSV file or a Parquet file (``.parquet`` / ``.pq``).

    Args:
        path: the file.
        columns: maps the roles ``user``, ``item`` (required) and ``rating``, ``timestamp``
            (optional) to column names; unspecified roles take :data:`DEFAULT_COLUMNS`. A
            rating or timestamp column named here explicitly must exist; a default one is used
            only when present.
        sep: field separator of a text file.
        keep: which duplicate of a user-item pair to keep, by position in the file.
        config_key: the config key of ``columns``, which a missing column's error names as
            the way to map it; None for a fixed layout (MovieLens ``ratings.csv``).
    """
    file = Path(path)
    given = dict(columns or {})
    unknown = set(given) - set(DEFAULT_COLUMNS)
    if unknown:
        raise DataError(
            f"{file}: unknown column role(s) {sorted(unknown)}; use user, item, rating, timestamp"
        )
    mapping = {**DEFAULT_COLUMNS, **given}
    if file.suffix.lower() in (".parquet", ".pq"):
        frame = _read_parquet(file)
    else:
        frame = _read_csv_table(file, sep)
    roles = ["user", "item"] + [role for role in ("rating", "timestamp") if role in given]
    hints = [
        (
            f"; {config_key}.{role}={given[role]} names no column of the file"
            if role in given
            else f"; map the file's columns by role with {config_key}.user=<column>, "
            f"{config_key}.item=<column> (and optionally {config_key}.rating, "
            f"{config_key}.timestamp)"
        )
        if config_key
        else ""
        for role in roles
    ]
    _require_columns(frame, file, [mapping[role] for role in roles], hints)
    user_col, item_col = mapping["user"], mapping["item"]
    return _build(
        file.stem,
        _table_ids(frame[user_col], file, user_col),
        _table_ids(frame[item_col], file, item_col),
        keep=keep,
        ratings=_optional_number(frame, file, mapping["rating"]),
        timestamps=_optional_number(frame, file, mapping["timestamp"], timestamp=True),
        source=str(file),
    )


def _table_ids(series: pd.Series, path: Path, field: str) -> np.ndarray:
    """Raw ids of a CSV/Parquet column, each kept exactly; a missing id names its row, and
    ids that differ only by surrounding whitespace are a warning (as in feature files).

    Integer columns keep their integers; a float column (Parquet stores an integer column with
    nulls as float) must hold whole numbers, which become text such as ``10``.
    """
    missing = series.isna().to_numpy()
    if missing.any():
        row = series.index[int(np.argmax(missing))]
        raise DataError(f"{path}: row {row}, field {field!r}: missing value")
    kind = series.dtype.kind
    if kind == "f":
        return canonical_float_ids(series, path, field).to_numpy()
    if kind in "iu":
        return series.to_numpy(dtype=np.int64 if kind == "i" else np.uint64)
    text = series.astype(str)
    _require_text(text.to_frame(), path, [field])
    _warn_spaced_ids(text, path, field)
    return text.to_numpy(dtype=object)


def _warn_spaced_ids(text: pd.Series, path: Path, field: str) -> None:
    """Warn when ids of ``field`` differ only by surrounding whitespace (``'2'`` and ``' 2'``):
    kept exactly, they are different users or items, which is seldom what the file meant.
    Looks at the distinct ids only, so a large file costs little."""
    distinct = pd.Series(pd.unique(text.to_numpy(dtype=object)), dtype=object)
    stripped = distinct.str.strip()
    spaced = (stripped != distinct).to_numpy()
    if not spaced.any():
        return
    clash = stripped.duplicated(keep=False).to_numpy() & spaced
    if not clash.any():
        return
    k = int(np.argmax(clash))
    partner = distinct[(stripped == stripped[k]).to_numpy() & ~spaced]
    other = str(partner.iloc[0]) if len(partner) else str(stripped[k])
    log.warning(
        "%s: field %r: %d ids differ from another only by surrounding whitespace (e.g. %r and "
        "%r), so they are read as different ids; %s",
        path,
        field,
        int(clash.sum()),
        str(distinct[k]),
        other,
        _STRIP,
    )


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: file not found")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: cannot read as Parquet: {exc}") from exc
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    _require_rows(frame, path)
    return frame
