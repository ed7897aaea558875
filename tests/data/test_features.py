"""Item modalities: dense matrices from feature tables, derived text with an on-disk cache."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data import features
from recsys.data.dataset import Dataset, FeatureTable, Vocabulary
from recsys.data.features import (
    TEXT_MODEL,
    available_modalities,
    default_modalities,
    feature_matrix,
    item_modalities,
    item_texts,
    modality_matrix,
    text_cache_path,
    text_encoder_available,
    text_features,
)
from recsys.data.readers import read_atomic, read_mmrec
from recsys.data.synthetic import make_synthetic
from recsys.errors import ConfigError, DataError


class FakeEncoder:
    """A deterministic stand-in for MiniLM: character statistics, counting its calls."""

    name = "fake-encoder"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), 8), dtype=np.float32)
        for k, text in enumerate(texts):
            for j, ch in enumerate(text.encode()):
                out[k, (ch + j) % 8] += 1.0
        return out


def _items_dataset(tmp_path: Path) -> Dataset:
    """Atomic files: 4 users x 3 items, with an .item file of titles, years and genres."""
    folder = tmp_path / "films"
    folder.mkdir()
    rows = ["user_id:token\titem_id:token"] + [
        f"u{u}\t{i}" for u, i in [(0, 10), (0, 11), (1, 11), (1, 12), (2, 10), (3, 12)]
    ]
    (folder / "films.inter").write_text("\n".join(rows) + "\n")
    (folder / "films.item").write_text(
        "item_id:token\ttitle:token_seq\tyear:token\tgenre:token_seq\tprice:float\n"
        "10\tThe Big Sleep\t1946\tCrime Film-Noir\t2.5\n"
        "11\tSleep Big The\t1946\tCrime\t4.5\n"
        "12\tAlien\t1979\tHorror Sci-Fi\t3.5\n"
        "99\tNever Rated\t2001\tDrama\t1.0\n"
    )
    return read_atomic(folder)


# ---------------------------------------------------------------------------------------------
# feature tables -> matrices
# ---------------------------------------------------------------------------------------------


def test_feature_matrix_per_kind(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    genre = feature_matrix(ds.item_features["genre"])
    assert genre.dtype == np.float32
    vocab = ds.item_features["genre"].vocab
    assert {vocab[j] for j in np.flatnonzero(genre[0])} == {"Crime", "Film-Noir"}
    assert set(np.unique(genre)) <= {0.0, 1.0}
    year = feature_matrix(ds.item_features["year"])
    assert year.shape == (3, 2) and np.array_equal(year.sum(1), [1, 1, 1])
    price = feature_matrix(ds.item_features["price"])  # numeric: standardised
    assert price.shape == (3, 1)
    assert np.allclose(price.mean(), 0, atol=1e-6) and np.allclose(price.std(), 1, atol=1e-5)
    wide = FeatureTable("emb", "dense", np.arange(6, dtype=np.float64).reshape(3, 2))
    assert np.array_equal(feature_matrix(wide), np.arange(6).reshape(3, 2))  # as given


def test_concatenated_modality(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    both = modality_matrix(ds, "genre+year")
    assert both.shape == (3, len(ds.item_features["genre"].vocab) + 2)
    out = item_modalities(ds, ["genre+year", "price"])
    assert list(out) == ["genre+year", "price"]


def test_unknown_modality_names_it_and_lists_the_known_ones(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown modality 'imagez'.*available: .*genre"):
        item_modalities(ds, ["imagez"])
    with pytest.raises(ConfigError, match=r"unknown modality 'nope'"):
        item_modalities(ds, ["genre+nope"])
    with pytest.raises(ConfigError, match=r"'genre' is listed twice"):
        item_modalities(ds, ["genre", "genre"])


def test_row_count_and_nan_rows_are_errors_naming_the_modality() -> None:
    ds = make_synthetic(30, 20, 200, seed=0)
    ds.item_features["short"] = FeatureTable("short", "dense", np.ones((19, 4), np.float32))
    with pytest.raises(DataError, match=r"modality 'short' .* 19 rows, but the dataset has 20"):
        item_modalities(ds, ["short"])
    bad = np.ones((20, 4), np.float32)
    bad[7, 2] = np.nan
    ds.item_features["holes"] = FeatureTable("holes", "dense", bad)
    with pytest.raises(DataError, match=r"modality 'holes' .* NaN or infinite values in row 7"):
        item_modalities(ds, ["holes"])


def test_default_modalities_of_synthetic_data() -> None:
    ds = make_synthetic(30, 20, 200, seed=0)
    assert default_modalities(ds) == ["text", "image", "genre"]
    shapes = {k: v.shape for k, v in item_modalities(ds).items()}
    assert shapes == {"text": (20, 64), "image": (20, 32), "genre": (20, 16)}
    assert item_modalities(ds, []) == {}


# ---------------------------------------------------------------------------------------------
# MMRec layout: the reader's checks, and the modality errors that name the missing file
# ---------------------------------------------------------------------------------------------


def _mmrec(folder: Path, n_items: int = 4, image_rows: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for u in range(3):
        for i in range(n_items):
            lines.append(f"{u}\t{i}\t5\t{100 + i}\t{0 if i < n_items - 2 else i - n_items + 3}")
    (folder / "mm.inter").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    np.save(folder / "image_feat.npy", rng.random((image_rows or n_items, 6)))
    np.save(folder / "text_feat.npy", rng.random((n_items, 5)).astype(np.float32))
    return folder


def test_mmrec_feature_files_become_modalities(tmp_path: Path) -> None:
    ds = read_mmrec(_mmrec(tmp_path / "mm"))
    assert default_modalities(ds) == ["image", "text"]
    assert {k: v.shape for k, v in item_modalities(ds).items()} == {"image": (4, 6), "text": (4, 5)}


def test_mmrec_bad_feature_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"image_feat\.npy: has 5 rows .* needs 4 rows"):
        read_mmrec(_mmrec(tmp_path / "rows", image_rows=5))
    folder = _mmrec(tmp_path / "nan")
    values = np.load(folder / "text_feat.npy")
    values[2, 1] = np.nan
    np.save(folder / "text_feat.npy", values)
    with pytest.raises(DataError, match=r"text_feat\.npy: row 2 .* NaN"):
        read_mmrec(folder)
    folder = _mmrec(tmp_path / "missing")
    (folder / "image_feat.npy").unlink()
    ds = read_mmrec(folder)
    with pytest.raises(ConfigError, match=r"unknown modality 'image'.*missing/image_feat\.npy"):
        item_modalities(ds, ["image", "text"])


# ---------------------------------------------------------------------------------------------
# item text
# ---------------------------------------------------------------------------------------------


def test_item_texts_from_the_item_file_keep_word_order(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    texts = item_texts(ds, ["title", "year", "genre"])
    assert texts == [
        "The Big Sleep 1946 Crime Film-Noir",
        "Sleep Big The 1946 Crime",
        "Alien 1979 Horror Sci-Fi",
    ]


def test_item_texts_fall_back_to_feature_tables() -> None:
    ds = make_synthetic(30, 20, 200, seed=0)
    texts = item_texts(ds, ["genre"])
    table = ds.item_features["genre"]
    first = [table.vocab[j] for j in table.values[[0]].indices]
    assert texts[0] == " ".join(first)
    with pytest.raises(ConfigError, match=r"text field\(s\) \['title'\] are not item fields"):
        item_texts(ds, ["title"])


def test_an_item_missing_from_the_item_file_is_an_error(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    item_file = Path(ds.source).with_suffix(".item")
    lines = item_file.read_text().splitlines()
    item_file.write_text("\n".join(line for line in lines if not line.startswith("12\t")) + "\n")
    with pytest.raises(DataError, match=r"films\.item: no row for item id\(s\) \['12'\]"):
        item_texts(ds, ["title"])


def test_text_features_are_cached_by_dataset_fields_and_model(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    enc = FakeEncoder()
    cache = tmp_path / "cache"
    table = text_features(ds, ["title", "genre"], encoder=enc, cache_dir=cache, progress=False)
    assert table.kind == "dense" and table.values.shape == (3, 8)
    path = text_cache_path("films", ["title", "genre"], enc.name, cache)
    assert path == cache / "films" / "features" / "text-title_genre-fake-encoder.npz"
    assert path.is_file() and len(enc.calls) == 1
    again = text_features(ds, ["title", "genre"], encoder=enc, cache_dir=cache, progress=False)
    assert len(enc.calls) == 1  # read from the cache
    assert np.array_equal(again.values, table.values)
    # a subset of the items (a filter) reuses the cached sentences
    sub = ds.subset(ds.coo()[1] != 2)
    part = text_features(sub, ["title", "genre"], encoder=enc, cache_dir=cache, progress=False)
    assert len(enc.calls) == 1 and np.array_equal(part.values, table.values[:2])
    # another field list is another file
    text_features(ds, ["title"], encoder=enc, cache_dir=cache, progress=False)
    assert len(enc.calls) == 2
    assert text_cache_path("films", ["title"], enc.name, cache).is_file()


def test_cache_encodes_only_new_sentences(tmp_path: Path) -> None:
    enc = FakeEncoder()
    path = tmp_path / "c.npz"
    first = features.encode_cached(["a", "b", "a"], enc, path)
    assert enc.calls == [["a", "b"]]
    assert np.array_equal(first[0], first[2])
    second = features.encode_cached(["b", "c"], enc, path)
    assert enc.calls[-1] == ["c"]
    assert np.array_equal(second[0], first[1])


def test_derived_text_modality_and_the_missing_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ds = _items_dataset(tmp_path)
    assert "text" not in available_modalities(ds)  # no card, no fields given
    assert "text" in available_modalities(ds, ["title"])
    out = item_modalities(
        ds, ["text", "genre"], text_fields=["title"], encoder=FakeEncoder(), cache_dir=tmp_path
    )
    assert out["text"].shape == (3, 8)
    monkeypatch.setattr(features, "text_encoder_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="recsys.data.features"):
        names = default_modalities(ds, ["title"])
    assert names == ["genre"]
    assert "recsys[text]" in caplog.text and "'text' modality" in caplog.text
    with pytest.raises(ConfigError, match=r"modality 'text' .* not installed: .*recsys\[text\]"):
        item_modalities(ds, ["text"], text_fields=["title"])
    with pytest.raises(ConfigError, match=r"unknown modality 'text'.*model\.text_fields"):
        item_modalities(ds, ["text"])


def test_movielens_card_names_its_text_fields() -> None:
    assert features.card_text_fields("ml-100k") == ["movie_title", "release_year", "class"]
    assert features.card_text_fields("no-such-card") == []


@pytest.mark.slow  # importing transformers alone takes 10-30 s
@pytest.mark.skipif(not text_encoder_available(), reason="recsys[text] is not installed")
def test_minilm_encodes_offline() -> None:
    enc = features.MiniLMEncoder(batch_size=2, progress=False)
    vectors = enc.encode(["a space opera", "science fiction in space", "a romantic comedy"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert enc.name == TEXT_MODEL
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]


@pytest.mark.slow
@pytest.mark.skipif(not text_encoder_available(), reason="recsys[text] is not installed")
def test_movielens_gets_text_and_genre_modalities() -> None:
    from recsys.data.catalog import DataConfig, load_dataset

    ds = load_dataset(DataConfig())
    assert default_modalities(ds) == ["text", "genre"]
    out = item_modalities(ds, progress=False)
    assert out["text"].shape == (1682, 384) and out["genre"].shape == (1682, 19)
    toy = ds.items.index(["1"])[0]
    assert item_texts(ds, ["movie_title", "release_year", "class"])[toy] == (
        "Toy Story 1995 Animation Children's Comedy"
    )


def test_multi_hot_from_sparse_table() -> None:
    table = FeatureTable(
        "tags", "multi_hot", sp.csr_array(np.eye(3, dtype=np.float32)), list("abc")
    )
    ds = Dataset.from_arrays(
        "t",
        Vocabulary(["u"], "user"),
        Vocabulary(["x", "y", "z"], "item"),
        np.array([0, 0, 0]),
        np.array([0, 1, 2]),
        item_features={"tags": table},
    )
    assert np.array_equal(modality_matrix(ds, "tags"), np.eye(3))
    assert item_texts(ds, ["tags"]) == ["a", "b", "c"]
