"""Dataset cards, downloads with checksums (over loopback HTTP), and load_dataset."""

from __future__ import annotations

import hashlib
import io
import socket
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from recsys.cli import main
from recsys.data import catalog
from recsys.data.catalog import (
    CHECKSUMS,
    DataConfig,
    DatasetCard,
    detect_format,
    download,
    fetch,
    get_card,
    list_cards,
    load_dataset,
)
from recsys.errors import ConfigError, DataError, DatasetNotFoundError

BUILT_IN = {
    "ml-100k",
    "ml-1m",
    "ml-20m",
    "gowalla",
    "yelp2018",
    "amazon-book",
    "baby",
    "sports",
    "clothing",
}

INTER = "user_id:token\titem_id:token\trating:float\n1\t1\t5\n1\t2\t3\n2\t1\t4\n2\t3\t2\n3\t2\t5\n"


def put_card(folder: Path, name: str, **fields: object) -> Path:
    """Write card ``name`` with ``fields`` into ``folder``; return its path."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **fields}))
    return path


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_zip(path: Path, files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


# ------------------------------------------------------------------------------------ cards


def test_built_in_cards_parse() -> None:
    cards = {card.name: card for card in list_cards()}
    assert set(cards) >= BUILT_IN
    assert cards["ml-100k"].split.strategy == "ratio"
    assert cards["ml-100k"].split.ratios == (0.8, 0.1, 0.1)
    assert cards["ml-100k"].preprocessing.rating_threshold is None
    assert cards["ml-100k"].preprocessing.min_user_interactions == 0
    for name in ("gowalla", "yelp2018", "amazon-book"):
        card = cards[name]
        assert (card.format, card.split.strategy) == ("lightgcn", "given")
        assert [f.url for f in card.files] == [
            f"https://raw.githubusercontent.com/kuandeng/LightGCN/master/Data/{name}/{part}.txt"
            for part in ("train", "test")
        ]
    for name in ("baby", "sports", "clothing"):
        card = cards[name]
        assert (card.format, card.split.strategy) == ("mmrec", "given")
        assert all(f.url is None for f in card.files) and card.manual
    for card in cards.values():
        assert card.source.startswith("https://") and card.citation and card.stats


def test_ml100k_card_records_package_checksums() -> None:
    card = get_card("ml-100k")
    assert card.package_data is not None
    assert card.package_data.package == "recbole"
    assert set(card.package_data.sha256) == {"ml-100k.inter", "ml-100k.item", "ml-100k.user"}
    assert card.files[0].url == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"


def test_get_card_unknown_lists_known_names() -> None:
    with pytest.raises(
        DatasetNotFoundError, match=r"unknown dataset 'ml-7'; .*known cards: .*ml-100k"
    ):
        get_card("ml-7")


def test_extra_card_folder_overrides(cards: Path) -> None:
    put_card(cards, "ml-1m", format="csv", description="mine")
    assert get_card("ml-1m").description == "mine"
    assert {c.name: c for c in list_cards()}["ml-1m"].description == "mine"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: other\nformat: csv\n", r"name 'other' differs from the file name"),
        ("name: bad\nformat: xml\n", r"format: Input should be"),
        ("name: bad\nformat: csv\nsplit: {strategy: sideways}\n", r"split.strategy"),
        ("name: bad\nformat: csv\nfiles: [{name: a, sha256: xyz}]\n", r"sha256 must be 64 hex"),
        ("name: bad\nformat: csv\ncolour: red\n", r"colour: Extra inputs"),
        ("name: [unclosed\n", r"cannot read YAML"),
        ("- a list\n", r"expected a mapping"),
    ],
)
def test_bad_card(cards: Path, text: str, message: str) -> None:
    (cards / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=rf"dataset card .*bad\.yaml: .*{message}"):
        get_card("bad")


# ----------------------------------------------------------------------------- ml-100k


def test_default_is_movielens_100k_from_recbole() -> None:
    ds = load_dataset(DataConfig())
    assert ds.name == "ml-100k"
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100000)
    assert ds.ratings is not None and sorted(np.unique(ds.ratings)) == [1, 2, 3, 4, 5]
    assert ds.timestamps is not None and ds.timestamps.min() > 8e8
    kinds = {k: t.kind for k, t in ds.item_features.items()}
    assert kinds == {
        "class": "multi_hot",
        "genre": "multi_hot",
        "release_year": "categorical",
        "movie_title": "multi_hot",
    }
    assert len(ds.item_features["genre"].vocab) == 19
    toy_story = ds.items.index(["1"])[0]
    genre = ds.item_features["genre"]
    assert {genre.vocab[j] for j in genre.values[[toy_story]].indices} == {
        "Animation",
        "Children's",
        "Comedy",
    }
    assert set(ds.user_features) == {"age", "gender", "occupation", "zip_code"}
    assert "recbole" in ds.source


def test_ml100k_overrides() -> None:
    ds = load_dataset(DataConfig(rating_threshold=4, min_user_interactions=20))
    assert ds.ratings.min() >= 4
    assert np.diff(ds.interactions.indptr).min() >= 20
    assert ds.n_interactions < 55376  # the ratings >= 4 before the k-core


def test_ml100k_falls_back_to_grouplens_files(
    cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(catalog, "_package_folder", lambda pkg: None)  # recbole not installed
    release = cache / "ml-100k" / "ml-100k"
    release.mkdir(parents=True)
    (release / "u.data").write_text("1\t10\t4\t881250949\n2\t10\t3\t881250950\n")
    for name in ("u.item", "u.user", "u.genre"):
        (release / name).write_text("")
    with pytest.raises(DataError, match=r"u\.item: empty file"):
        load_dataset(DataConfig())
    flags = "|".join(["0"] * 18 + ["1"])
    (release / "u.item").write_text(f"10|Some Western (1950)|01-Jan-1950||http://x|{flags}\n")
    (release / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    (release / "u.genre").write_text("unknown|0\n")
    with pytest.raises(
        DataError, match=r"u\.item: row 1 \(line 1\): more fields than the expected 6 fields"
    ):
        load_dataset(DataConfig())
    (release / "u.genre").write_text("".join(f"g{k}|{k}\n" for k in range(18)) + "Western|18\n")
    with pytest.warns(UserWarning, match="loaded 2 users"), caplog.at_level("INFO"):
        ds = load_dataset(DataConfig())
    assert (ds.name, ds.n_interactions) == ("ml-100k", 2)
    assert set(ds.item_features) == {"genre", "year"}
    # the card's text fields are RecBole's: the log says why the text modality is missing
    assert (
        "dataset 'ml-100k': the card's text_fields movie_title, release_year, class are not "
        "item fields of the files read (item fields: genre, year); they exist only in its "
        "package_data source, the files of the 'recbole' package, which is not installed"
    ) in caplog.text
    genre = ds.item_features["genre"]
    assert [genre.vocab[j] for j in genre.values[[0]].indices] == ["Western"]


def test_package_data_checksum_mismatch(
    cards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "fakepkg" / "data").mkdir(parents=True)
    (site / "fakepkg" / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    inter = site / "fakepkg" / "data" / "toy.inter"
    inter.write_text(INTER)
    monkeypatch.syspath_prepend(str(site))
    good = hashlib.sha256(INTER.encode()).hexdigest()
    package = {"package": "fakepkg", "path": "data", "format": "atomic"}
    put_card(cards, "toy", format="csv", package_data={**package, "sha256": {"toy.inter": good}})
    ds = load_dataset(DataConfig(name="toy"))
    assert (ds.name, ds.n_interactions) == ("toy", 5)
    assert "fakepkg" not in sys.modules
    put_card(
        cards, "toy", format="csv", package_data={**package, "sha256": {"toy.inter": "0" * 64}}
    )
    with pytest.raises(
        DataError, match=rf"toy\.inter: checksum mismatch: expected sha256 {'0' * 64} .*got {good}"
    ):
        load_dataset(DataConfig(name="toy"))


# -------------------------------------------------------------------------------- downloads


@pytest.mark.network
def test_download_zip_trust_on_first_use(
    cards: Path, cache: Path, http_server: tuple[str, Path]
) -> None:
    base, www = http_server
    digest = make_zip(www / "toy.zip", {"toy/toy.inter": INTER, "toy/README": "x"})
    put_card(
        cards,
        "toy",
        format="atomic",
        root="toy",
        files=[
            {
                "name": "toy.zip",
                "url": f"{base}/toy.zip",
                "extract": True,
                "members": ["toy/toy.inter"],
            }
        ],
        stats={"users": 3, "items": 3, "interactions": 5},
    )
    ds = load_dataset(DataConfig(name="toy"))
    assert (ds.name, ds.n_users, ds.n_interactions) == ("toy", 3, 5)
    folder = cache / "toy"
    assert (folder / CHECKSUMS).read_text() == f"{digest}  toy.zip\n"
    assert (folder / "toy" / "toy.inter").is_file() and not (folder / "toy" / "README").exists()
    assert not list(folder.glob(".*part"))
    assert fetch(get_card("toy")) == folder / "toy"

    # the server now has a different file: the cached copy is still the trusted one
    make_zip(www / "toy.zip", {"toy/toy.inter": INTER.replace("\t5\n", "\t4\n")})
    assert load_dataset(DataConfig(name="toy")).n_interactions == 5

    # the cached archive is corrupted: the mismatch is reported, the file moved aside and
    # what was extracted from it removed
    (folder / "toy.zip").write_bytes(b"corrupt")
    with pytest.raises(DataError, match=rf"toy\.zip: checksum mismatch: expected sha256 {digest}"):
        load_dataset(DataConfig(name="toy"))
    assert not (folder / "toy.zip").exists()
    assert (folder / "toy.zip.mismatch").read_bytes() == b"corrupt"
    assert not (folder / "toy" / "toy.inter").exists()

    # a re-download is checked against the recorded checksum, and the server's file differs
    with pytest.raises(DataError, match=r"recorded in .*CHECKSUMS on the first download"):
        load_dataset(DataConfig(name="toy"))
    assert not (folder / "toy.zip").exists() and not list(folder.glob(".*part"))


@pytest.mark.network
def test_download_card_checksum(cards: Path, cache: Path, http_server: tuple[str, Path]) -> None:
    base, www = http_server
    (www / "train.txt").write_text("0 1 2\n1 2\n")
    (www / "test.txt").write_text("0 3\n1 1\n")
    sums = {
        n: hashlib.sha256((www / n).read_bytes()).hexdigest() for n in ("train.txt", "test.txt")
    }
    files = [
        {"name": n, "url": f"{base}/{n}", "sha256": sums[n]} for n in ("train.txt", "test.txt")
    ]
    put_card(cards, "lg", format="lightgcn", files=files, split={"strategy": "given"})
    ds = load_dataset(DataConfig(name="lg"))
    assert ds.split_labels.tolist() == [0, 0, 2, 2, 0]
    assert not (cache / "lg" / CHECKSUMS).exists()  # the card's checksums are enough

    files[1]["sha256"] = "f" * 64
    put_card(cards, "lg2", format="lightgcn", files=files)
    with pytest.raises(
        DataError,
        match=rf"test\.txt \(from {base}/test\.txt\): checksum mismatch: expected sha256 f{{64}}, "
        rf"got {sums['test.txt']}; the download was removed",
    ):
        load_dataset(DataConfig(name="lg2"))
    assert sorted(p.name for p in (cache / "lg2").iterdir()) == ["train.txt"]


@pytest.mark.network
def test_download_unreachable(cards: Path, cache: Path) -> None:
    url = f"http://127.0.0.1:{unused_port()}/toy.zip"
    put_card(
        cards, "toy", format="atomic", files=[{"name": "toy.zip", "url": url, "extract": True}]
    )
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(DataConfig(name="toy"))
    message = str(info.value)
    assert f"cannot download {url}" in message
    assert f"by hand into {cache / 'toy'}" in message and "data.path" in message
    assert not list((cache / "toy").iterdir())


@pytest.mark.network
def test_download_http_error(tmp_path: Path, http_server: tuple[str, Path]) -> None:
    base, _ = http_server
    with pytest.raises(
        DatasetNotFoundError, match=rf"cannot download {base}/missing\.txt: .*File not found"
    ):
        download(f"{base}/missing.txt", tmp_path / "missing.txt", progress=False)


def test_download_file_url(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"hello")
    dest = tmp_path / "out" / "copy.bin"
    digest = download(source.as_uri(), dest, progress=False)
    assert dest.read_bytes() == b"hello" and digest == hashlib.sha256(b"hello").hexdigest()


def test_tar_archive_and_unsafe_member(cards: Path, cache: Path, tmp_path: Path) -> None:
    archive = tmp_path / "toy.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, text in {"toy.inter": INTER, "../evil.txt": "x"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tf.addfile(info, io.BytesIO(text.encode()))
    url = archive.as_uri()
    put_card(
        cards,
        "tt",
        format="atomic",
        files=[{"name": "toy.tar.gz", "url": url, "extract": True, "members": ["toy.inter"]}],
    )
    assert fetch(get_card("tt")) == cache / "tt"
    assert (cache / "tt" / "toy.inter").read_text() == INTER
    put_card(
        cards, "evil", format="atomic", files=[{"name": "toy.tar.gz", "url": url, "extract": True}]
    )
    with pytest.raises(DataError, match=r"member '\.\./evil\.txt' would be written outside"):
        fetch(get_card("evil"))
    assert not (cache / "evil.txt").exists()
    put_card(
        cards,
        "gone",
        format="atomic",
        files=[{"name": "toy.tar.gz", "url": url, "extract": True, "members": ["nope"]}],
    )
    with pytest.raises(DataError, match=r"toy\.tar\.gz: the card lists member 'nope'"):
        fetch(get_card("gone"))


def test_extract_all_once_and_not_an_archive(cards: Path, cache: Path, tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    make_zip(archive, {"a.inter": INTER, "sub/b.txt": "b"})
    put_card(
        cards,
        "all",
        format="atomic",
        files=[{"name": "all.zip", "url": archive.as_uri(), "extract": True}],
    )
    folder = fetch(get_card("all"))
    assert (folder / "sub" / "b.txt").read_text() == "b"
    (folder / "sub" / "b.txt").write_text("edited")
    fetch(get_card("all"))  # verified again, but not extracted a second time
    assert (folder / "sub" / "b.txt").read_text() == "edited"

    plain = tmp_path / "plain.zip"
    plain.write_text("not an archive")
    put_card(
        cards,
        "plain",
        format="atomic",
        files=[{"name": "plain.zip", "url": plain.as_uri(), "extract": True}],
    )
    with pytest.raises(DataError, match=r"plain\.zip: not a zip or tar archive"):
        fetch(get_card("plain"))


# ----------------------------------------------------------------------------- manual files


def test_manual_files_missing_then_placed(tmp_path: Path) -> None:
    cache_dir = tmp_path / "mycache"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(DataConfig(name="baby", cache_dir=cache_dir))
    message = str(info.value)
    assert "baby.inter, image_feat.npy, text_feat.npy cannot be downloaded automatically" in message
    assert "Google Drive" in message and str(cache_dir / "baby") in message
    assert "https://github.com/enoche/MMRec" in message

    folder = cache_dir / "baby"
    folder.mkdir(parents=True)
    (folder / "baby.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n1\t1\t0\n")
    np.save(folder / "image_feat.npy", np.ones((2, 3), dtype=np.float32))
    np.save(folder / "text_feat.npy", np.zeros((2, 2), dtype=np.float32))
    with pytest.warns(
        UserWarning,
        match=r"dataset 'baby': loaded 2 users \(the card expects 19445\), 2 items .*, "
        r"3 interactions",
    ):
        ds = load_dataset(DataConfig(name="baby", cache_dir=cache_dir))
    assert ds.split_labels.tolist() == [0, 2, 0]
    assert set(ds.item_features) == {"image", "text"}


# ------------------------------------------------------------------------------ local paths


def test_path_formats_detected(tmp_path: Path) -> None:
    (tmp_path / "atomic").mkdir()
    (tmp_path / "atomic" / "atomic.inter").write_text(INTER)
    (tmp_path / "lg").mkdir()
    (tmp_path / "lg" / "train.txt").write_text("0 1\n")
    (tmp_path / "lg" / "test.txt").write_text("0 2\n")
    (tmp_path / "t.csv").write_text("user_id,item_id\na,b\n")
    assert detect_format(tmp_path / "atomic") == "atomic"
    assert detect_format(tmp_path / "atomic" / "atomic.inter") == "atomic"
    assert detect_format(tmp_path / "lg") == "lightgcn"
    assert detect_format(tmp_path / "t.csv") == "csv"
    assert detect_format(tmp_path / "nothing") is None
    assert detect_format(tmp_path / "lg" / "train.txt") == "lightgcn"
    ds = load_dataset(DataConfig(path=tmp_path / "atomic"))
    assert (ds.name, ds.n_interactions) == ("atomic", 5)
    assert load_dataset(DataConfig(path=tmp_path / "lg")).split_labels.tolist() == [0, 2]
    assert load_dataset(DataConfig(path=tmp_path / "t.csv")).n_interactions == 1


def test_path_with_columns_and_threshold(tmp_path: Path) -> None:
    path = tmp_path / "r.tsv"
    path.write_text("u\ti\tr\n1\t1\t5\n1\t2\t2\n2\t1\t4\n")
    cfg = DataConfig(
        path=path, columns={"user": "u", "item": "i", "rating": "r"}, rating_threshold=4
    )
    ds = load_dataset(cfg)
    assert ds.n_interactions == 2 and ds.ratings.tolist() == [5.0, 4.0]
    with pytest.raises(DataError, match=r"rating_threshold=9 removed every interaction"):
        load_dataset(cfg.model_copy(update={"rating_threshold": 9}))


def test_path_with_card_name_uses_card(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "u.data").write_text("1\t1\t5\t1\n2\t1\t3\t2\n")
    ds = load_dataset(DataConfig(name="ml-100k", path=folder))
    assert (ds.name, ds.n_interactions) == ("ml-100k", 2)
    assert load_dataset(DataConfig(path=folder)).name == "mine"
    assert detect_format(folder / "u.data") == "movielens"
    assert load_dataset(DataConfig(path=folder / "u.data")).n_interactions == 2


def test_path_errors(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_text("?")
    with pytest.raises(ConfigError, match=r"cannot tell its format; set data.format"):
        load_dataset(DataConfig(path=tmp_path / "x.bin"))
    with pytest.raises(DatasetNotFoundError, match=r"nope: no such file or folder"):
        load_dataset(DataConfig(path=tmp_path / "nope", format="csv"))
    # without a format either: missing, not "cannot tell its format"
    with pytest.raises(DatasetNotFoundError, match=r"nope: no such file or folder"):
        load_dataset(DataConfig(path=tmp_path / "nope"))
    with pytest.raises(DataError, match=r"format 'csv' needs a file, not a folder"):
        load_dataset(DataConfig(path=tmp_path, format="csv"))
    with pytest.raises(ConfigError, match=r"data.format='csv' applies only with data.path"):
        load_dataset(DataConfig(format="csv"))


def test_data_config_validation() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        DataConfig(nmae="ml-100k")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        DataConfig(min_item_interactions=-2)


def test_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.DATA_DIR_ENV, str(tmp_path / "env"))
    assert catalog.cache_root() == tmp_path / "env"
    assert catalog.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(catalog.DATA_DIR_ENV)
    assert catalog.cache_root() == Path.home() / ".cache" / "recsys" / "datasets"


# -------------------------------------------------------------------------------- synthetic


def test_synthetic_names() -> None:
    ds = load_dataset(DataConfig(name="synthetic"))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (1000, 500, 20000)
    ds = load_dataset(DataConfig(name="synthetic-200x100x3000", min_item_interactions=5))
    assert ds.name == "synthetic-200x100x3000" and ds.n_users == 200
    assert np.bincount(ds.interactions.indices).min() >= 5
    again = load_dataset(DataConfig(name="synthetic-200x100x3000", min_item_interactions=5))
    assert (again.interactions != ds.interactions).nnz == 0
    other = load_dataset(DataConfig(name="synthetic-200x100x3000", seed=1))
    assert (other.interactions != ds.interactions).nnz > 0
    with pytest.raises(DatasetNotFoundError, match="unknown dataset 'synthetic-big'"):
        load_dataset(DataConfig(name="synthetic-big"))


def test_card_model_round_trip() -> None:
    card = get_card("gowalla")
    again = DatasetCard.model_validate(card.model_dump())
    assert again.model_dump() == card.model_dump()


def test_archive_mismatch_advice_holds(
    cards: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source" / "toy.zip"
    source.parent.mkdir()
    make_zip(source, {"toy/toy.inter": INTER})
    put_card(
        cards,
        "toy",
        format="atomic",
        root="toy",
        files=[{"name": "toy.zip", "url": source.as_uri(), "extract": True}],
    )
    assert main(["data", "prepare", "toy"]) == 0
    folder = cache / "toy"
    with open(folder / "toy.zip", "ab") as fh:
        fh.write(b"junk")  # e.g. a hand-placed file that is not the trusted one
    capsys.readouterr()
    assert main(["data", "prepare", "toy"]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "moved aside to toy.zip.mismatch" in err
    assert "load again to download it afresh" in err and "delete its line from" in err
    assert (folder / "toy.zip.mismatch").read_bytes().endswith(b"junk")  # kept, not deleted
    # the advice holds: the next load downloads it afresh and extracts it again
    (folder / "toy" / "toy.inter").write_text("stale")
    assert main(["data", "prepare", "toy"]) == 0
    assert (folder / "toy.zip").read_bytes() == source.read_bytes()
    assert (folder / "toy" / "toy.inter").read_text() == INTER


def test_card_sha256_mismatch_of_a_hand_placed_file(cards: Path, cache: Path) -> None:
    card = put_card(
        cards, "man", format="atomic", files=[{"name": "man.inter", "sha256": "b" * 64}]
    )
    (cache / "man").mkdir(parents=True)
    (cache / "man" / "man.inter").write_text(INTER)
    with pytest.raises(DataError, match="checksum mismatch") as info:
        load_dataset(DataConfig(name="man"))
    message = str(info.value)
    assert (
        f"the card expects another file: get the release it describes, or fix or remove "
        f"files[].sha256 in {card}" in message
    )
    assert CHECKSUMS not in message
    assert (cache / "man" / "man.inter").is_file()  # a file placed by hand is never removed


def test_manual_text_is_a_sentence(cards: Path, cache: Path) -> None:
    put_card(
        cards,
        "man",
        format="atomic",
        files=[{"name": "man.inter"}],
        manual="get it from the vendor",
    )
    with pytest.raises(DatasetNotFoundError, match=r"get it from the vendor\. Place the files"):
        load_dataset(DataConfig(name="man"))
