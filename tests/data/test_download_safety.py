"""Downloads and archive extraction under failure: cut-off and stalled transfers, server
errors, hostile archives (zip-slip, links), corrupt archives, cards that do not match their
files, unusable cache folders and two preparations of one dataset at once. Every server is
local (127.0.0.1) or a file:// URL."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import io
import json
import os
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.cli import main
from recsys.data import catalog
from recsys.data.catalog import CHECKSUMS, DataConfig, download, fetch, get_card, load_dataset
from recsys.errors import ConfigError, DataError, DatasetNotFoundError
from tests.data.test_catalog import INTER, put_card


def zip_bytes(files: dict[str, str], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) | 0x10  # a symbolic link, as `zip -y` makes
            zf.writestr(info, target)
    return buffer.getvalue()


def leftovers(folder: Path) -> list[str]:
    """Temporary files a download or an extraction left behind."""
    return sorted(p.name for p in folder.rglob("*.part")) if folder.exists() else []


class Server:
    """A loopback HTTP server whose answers a test sets per path: (status, body, options)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, dict[str, float | int]]] = {}
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with server.lock:
                    server.hits[self.path] = server.hits.get(self.path, 0) + 1
                status, body, opts = server.routes.get(self.path, (404, b"", {}))
                time.sleep(float(opts.get("delay", 0)))
                if status != 200:
                    self.send_error(status)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(int(opts.get("length", len(body)))))
                self.end_headers()
                cut = int(opts.get("cut", len(body)))
                self.wfile.write(body[:cut])
                self.wfile.flush()
                time.sleep(float(opts.get("stall", 0)))
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, status: int = 200, **opts: float) -> str:
        self.routes[path] = (status, body, opts)
        return self.base + path


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


# ------------------------------------------------------------------ interrupted downloads


@pytest.mark.network
def test_cut_off_download_is_an_error_and_leaves_nothing(
    cards: Path, cache: Path, server: Server
) -> None:
    body = INTER.encode()
    # the server announces the full length but closes the connection half-way through
    url = server.serve("/toy.inter", body, cut=len(body) // 2)
    put_card(cards, "toy", format="atomic", files=[{"name": "toy.inter", "url": url}])
    with pytest.raises(
        DatasetNotFoundError,
        match=rf"cannot download {url}: the connection closed after {len(body) // 2} of "
        rf"{len(body)} bytes",
    ):
        load_dataset(DataConfig(name="toy"))
    folder = cache / "toy"
    assert not (folder / "toy.inter").exists() and not (folder / CHECKSUMS).exists()
    assert leftovers(folder) == []

    server.serve("/toy.inter", body)  # the next run downloads it whole and trusts that
    assert load_dataset(DataConfig(name="toy")).n_interactions == 5
    digest = hashlib.sha256(body).hexdigest()
    assert (folder / CHECKSUMS).read_text() == f"{digest}  toy.inter\n"


@pytest.mark.network
def test_stalled_download_times_out_and_leaves_nothing(tmp_path: Path, server: Server) -> None:
    url = server.serve("/big.bin", b"x" * 1000, cut=10, stall=2)
    dest = tmp_path / "out" / "big.bin"
    with pytest.raises(
        DatasetNotFoundError, match=rf"cannot download {url}: no answer within 0\.3 s"
    ):
        download(url, dest, timeout=0.3, progress=False)
    assert list(dest.parent.iterdir()) == []


@pytest.mark.network
@pytest.mark.parametrize(("status", "reason"), [(404, "Not Found"), (500, "Internal Server Error")])
def test_http_error_names_status_and_url(
    cards: Path, cache: Path, server: Server, status: int, reason: str
) -> None:
    url = server.serve("/data.zip", b"", status=status)
    put_card(cards, "web", format="atomic", files=[{"name": "data.zip", "url": url}])
    assert main(["data", "prepare", "web"]) == 2
    with pytest.raises(
        DatasetNotFoundError, match=rf"cannot download {url}: HTTP {status} {reason}"
    ):
        fetch(get_card("web"))
    assert list((cache / "web").iterdir()) == []


# ------------------------------------------------------------------------ hostile archives


def test_zip_slip_is_refused_before_anything_is_written(
    cards: Path, cache: Path, tmp_path: Path
) -> None:
    for name, member in [("dots", "zz/../../evil.txt"), ("absolute", str(tmp_path / "evil.txt"))]:
        archive = tmp_path / f"{name}.zip"
        archive.write_bytes(zip_bytes({"a.inter": INTER, member: "x"}))
        put_card(
            cards,
            name,
            format="atomic",
            files=[{"name": f"{name}.zip", "url": archive.as_uri(), "extract": True}],
        )
        with pytest.raises(DataError, match=r"would be written outside") as info:
            fetch(get_card(name))
        folder = cache / name
        # checked before writing: not even the harmless member is extracted, and the archive
        # is not kept (nor its checksum recorded) for the next run to trust
        assert sorted(p.name for p in folder.iterdir()) == []
        assert str(info.value).endswith("the download was removed")
    assert not (tmp_path / "evil.txt").exists() and not (cache / "evil.txt").exists()


def test_card_members_and_names_must_stay_inside(cards: Path) -> None:
    bad = {
        "up": {
            "files": [
                {"name": "a.zip", "url": "file:///a.zip", "extract": True, "members": ["../x"]}
            ]
        },
        "abs": {"files": [{"name": "/etc/a.txt", "url": "file:///a.txt"}]},
        "out": {"files": [{"name": "../a.txt", "url": "file:///a.txt"}]},
        "root": {"root": "../..", "files": [{"name": "a.txt", "url": "file:///a.txt"}]},
        "noext": {"files": [{"name": "a.zip", "url": "file:///a.zip", "members": ["x"]}]},
        "twice": {"files": [{"name": "a.txt"}, {"name": "a.txt"}]},
    }
    messages = {
        "up": r"files\.0\.members: .*must not contain '\.\.'",
        "abs": r"files\.0\.name: .*must be a relative path",
        "out": r"files\.0\.name: .*must not contain '\.\.'",
        "root": r"root: .*must not contain '\.\.'",
        "noext": r"files\.0: .*members are only read with extract: true",
        "twice": r"files: .*file names must be unique, repeated: a\.txt",
    }
    for name, fields in bad.items():
        put_card(cards, name, format="atomic", **fields)
        with pytest.raises(ConfigError, match=rf"dataset card .*{name}\.yaml: {messages[name]}"):
            get_card(name)


def test_links_in_archives_are_never_extracted(cards: Path, cache: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tf:
        link = tarfile.TarInfo("d")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tf.addfile(link)
        hard = tarfile.TarInfo("h")
        hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/passwd"
        tf.addfile(hard)
        for name in ("d/evil.txt", "toy.inter"):
            data = (INTER if name == "toy.inter" else "x").encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    put_card(
        cards,
        "links",
        format="atomic",
        files=[{"name": "links.tar", "url": archive.as_uri(), "extract": True}],
    )
    folder = fetch(get_card("links"))
    assert (folder / "toy.inter").read_text() == INTER
    assert not (folder / "d").is_symlink() and not (folder / "h").exists()
    assert list(outside.iterdir()) == []

    put_card(
        cards,
        "hard",
        format="atomic",
        files=[{"name": "links.tar", "url": archive.as_uri(), "extract": True, "members": ["h"]}],
    )
    with pytest.raises(DataError, match=r"member 'h' is a link, which is never extracted"):
        fetch(get_card("hard"))

    # a zip entry marked as a symbolic link is skipped too (zipfile would write it as a file)
    zipped = tmp_path / "links.zip"
    zipped.write_bytes(zip_bytes({"toy.inter": INTER}, links={"passwd": "/etc/passwd"}))
    put_card(
        cards,
        "ziplink",
        format="atomic",
        files=[{"name": "links.zip", "url": zipped.as_uri(), "extract": True}],
    )
    folder = fetch(get_card("ziplink"))
    assert (folder / "toy.inter").is_file() and not (folder / "passwd").exists()


def test_member_naming_the_folder_itself_is_refused(
    cards: Path, cache: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "dot.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo(".")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    put_card(
        cards,
        "dot",
        format="atomic",
        files=[{"name": "dot.tar", "url": archive.as_uri(), "extract": True}],
    )
    with pytest.raises(DataError, match=r"member '\.' would be written outside"):
        fetch(get_card("dot"))
    assert leftovers(cache) == []


@pytest.mark.parametrize(
    ("member", "shown"),
    [
        ("CHECKSUMS", "CHECKSUMS"),
        ("own.zip", "own.zip"),
        ("notes.txt", "notes.txt"),
        (".own.zip.extracted", ".own.zip.extracted"),
        ("sub/.x.abc.part", "sub/.x.abc.part"),
    ],
)
def test_member_overwriting_the_caches_own_files_is_refused(
    cards: Path, cache: Path, tmp_path: Path, member: str, shown: str
) -> None:
    archive = tmp_path / "src" / "own.zip"
    archive.parent.mkdir()
    archive.write_bytes(zip_bytes({"own.inter": INTER, member: "0" * 64 + "  notes.txt\n"}))
    put_card(
        cards,
        "own",
        format="atomic",
        files=[
            {"name": "own.zip", "url": archive.as_uri(), "extract": True},
            {"name": "notes.txt", "optional": True},
        ],
    )
    with pytest.raises(
        DataError, match=rf"member '{member}' would overwrite the cache's own file {shown}"
    ) as info:
        fetch(get_card("own"))
    assert "dataset card" in str(info.value) and "files[0] (own.zip)" in str(info.value)
    folder = cache / "own"
    assert not (folder / "own.inter").exists() and not (folder / CHECKSUMS).exists()
    assert not (folder / "own.zip").exists()  # a fresh download that failed is removed


def test_os_error_during_extraction_is_a_data_error_that_cleans_up(
    cards: Path, cache: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "src" / "nest.zip"
    archive.parent.mkdir()
    archive.write_bytes(zip_bytes({"own.inter": INTER, "b": "x"}))
    put_card(
        cards,
        "nest",
        format="atomic",
        files=[{"name": "nest.zip", "url": archive.as_uri(), "extract": True}],
    )
    folder = cache / "nest"
    (folder / "b").mkdir(parents=True)  # a folder where a member goes: the OS refuses
    with pytest.raises(DataError, match=r"nest\.zip: cannot extract: .*b") as info:
        fetch(get_card("nest"))
    message = str(info.value)
    assert "files[0] (nest.zip)" in message and "the download was removed" in message
    assert not (folder / "nest.zip").exists() and not (folder / "own.inter").exists()
    assert leftovers(folder) == []

    # a member inside another member is refused before anything is written
    archive.write_bytes(zip_bytes({"a": "x", "a/b": "y"}))
    (folder / "b").rmdir()
    with pytest.raises(DataError, match=r"member 'a/b' would be written inside another member"):
        fetch(get_card("nest"))
    assert not (folder / "a").exists() and not (folder / "nest.zip").exists()


def test_unsupported_zip_compression_is_a_data_error(
    cards: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(zip_bytes({"own.inter": INTER}))
    # compression method 99 (AES, as WinZip writes it), which zipfile cannot read
    for header in (b"PK\x03\x04", b"PK\x01\x02"):
        at = data.find(header)
        offset = at + (8 if header == b"PK\x03\x04" else 10)
        data[offset : offset + 2] = (99).to_bytes(2, "little")
    archive = tmp_path / "src" / "aes.zip"
    archive.parent.mkdir()
    archive.write_bytes(bytes(data))
    put_card(
        cards,
        "aes",
        format="atomic",
        files=[{"name": "aes.zip", "url": archive.as_uri(), "extract": True}],
    )
    assert main(["data", "prepare", "aes"]) == 2
    err = capsys.readouterr().err
    assert "aes.zip: cannot extract:" in err and "files[0] (aes.zip)" in err, err
    assert "internal error" not in err


# ------------------------------------------------------------- corrupt or mismatched files


@pytest.mark.network
def test_corrupt_fresh_archive_is_removed_not_trusted(
    cards: Path, cache: Path, server: Server
) -> None:
    good = zip_bytes({"toy/toy.inter": INTER, "toy/b.txt": "b" * 64})
    bad = bytearray(zip_bytes({"toy/toy.inter": INTER, "toy/b.txt": "b" * 64}))
    at = bytes(bad).index(b"b" * 64)
    bad[at] = ord("c")  # b.txt's CRC no longer matches: toy.inter extracts, b.txt fails
    url = server.serve("/toy.zip", bytes(bad))
    put_card(
        cards,
        "toy",
        format="atomic",
        root="toy",
        files=[{"name": "toy.zip", "url": url, "extract": True}],
    )
    folder = cache / "toy"
    with pytest.raises(
        DataError,
        match=r"toy\.zip: corrupt archive: .*\(dataset card .*toy\.yaml, files\[0\] "
        r"\(toy\.zip\)\); the download was removed",
    ):
        load_dataset(DataConfig(name="toy"))
    assert not (folder / "toy.zip").exists() and not (folder / CHECKSUMS).exists()
    assert not (folder / "toy" / "b.txt").exists() and leftovers(folder) == []

    # the same for a server that answers with a page instead of the archive
    server.serve("/toy.zip", b"<html>rate limited</html>")
    with pytest.raises(DataError, match=r"not a zip or tar archive .*the download was removed"):
        load_dataset(DataConfig(name="toy"))
    assert not (folder / CHECKSUMS).exists()

    # the next run downloads afresh, extracts every file and only then trusts the archive
    server.serve("/toy.zip", good)
    assert load_dataset(DataConfig(name="toy")).n_interactions == 5
    assert (folder / "toy" / "b.txt").read_text() == "b" * 64
    assert (folder / CHECKSUMS).read_text() == f"{hashlib.sha256(good).hexdigest()}  toy.zip\n"


def test_card_files_that_do_not_match_the_archive(cards: Path, cache: Path, tmp_path: Path) -> None:
    archive = tmp_path / "toy.zip"
    archive.write_bytes(zip_bytes({"toy/toy.inter": INTER, "toy/README": "x"}))
    card = put_card(
        cards,
        "toy",
        format="atomic",
        files=[
            {
                "name": "toy.zip",
                "url": archive.as_uri(),
                "extract": True,
                "members": ["toy/ratings.inter"],
            }
        ],
    )
    with pytest.raises(
        DataError,
        match=r"the card lists member 'toy/ratings\.inter', which the archive does not contain "
        rf"\(its files: toy/README, toy/toy\.inter\) \(dataset card {card}, files\[0\]",
    ):
        fetch(get_card("toy"))

    card = put_card(
        cards,
        "rooted",
        format="atomic",
        root="ml-toy",
        files=[{"name": "toy.zip", "url": archive.as_uri(), "extract": True}],
    )
    with pytest.raises(
        DataError,
        match=rf"dataset 'rooted': the card's root 'ml-toy' is not a folder in {cache / 'rooted'} "
        rf"\(it holds: toy, toy\.zip\); fix `root` in {card}",
    ):
        load_dataset(DataConfig(name="rooted"))


# ---------------------------------------------------------------------- names and folders


def test_unknown_or_path_like_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", "ml100k"]) == 2
    assert "unknown dataset 'ml100k'; did you mean 'ml-100k'?" in capsys.readouterr().err
    assert main(["data", "stats", "synthetc"]) == 2
    assert "did you mean 'synthetic'?" in capsys.readouterr().err
    # a name is a card's file stem, never a path to a card somewhere else
    with pytest.raises(DatasetNotFoundError, match=r"unknown dataset '\.\./datasets/ml-1m'"):
        get_card("../datasets/ml-1m")
    assert main(["data", "stats", "ml-100k", "--set", "colour=red"]) == 2
    assert "unknown key 'data.colour'" in capsys.readouterr().err


def test_data_dir_pointing_at_a_file(
    cards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "toy.inter"
    source.write_text(INTER)
    put_card(cards, "toy", format="atomic", files=[{"name": "toy.inter", "url": source.as_uri()}])
    not_a_folder = tmp_path / "datadir"
    not_a_folder.write_text("")
    for value in (not_a_folder, not_a_folder / "sub"):
        monkeypatch.setenv(catalog.DATA_DIR_ENV, str(value))
        for name in ("toy", "baby"):  # a download, and files placed by hand
            assert main(["data", "prepare", name]) == 2
            err = capsys.readouterr().err
            assert (
                f"error: cache folder {value} (from $RECSYS_DATA_DIR) cannot hold dataset "
                f"{name!r}: {not_a_folder} is a file, not a folder" in err
            )
    with pytest.raises(DataError, match=r"\(from data\.cache_dir\)"):
        load_dataset(DataConfig(name="toy", cache_dir=not_a_folder))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders"
)
def test_data_dir_not_writable(
    cards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "toy.inter"
    source.write_text(INTER)
    put_card(cards, "toy", format="atomic", files=[{"name": "toy.inter", "url": source.as_uri()}])
    locked = tmp_path / "locked"
    (locked / "toy").mkdir(parents=True)
    (locked / "toy").chmod(0o500)
    monkeypatch.setenv(catalog.DATA_DIR_ENV, str(locked))
    try:
        with pytest.raises(DataError, match=r"\(from \$RECSYS_DATA_DIR\) .*is not writable"):
            fetch(get_card("toy"))
    finally:
        (locked / "toy").chmod(0o700)


# ------------------------------------------------------------------------- concurrency


@pytest.mark.network
def test_two_preparations_at_once_download_once(cards: Path, cache: Path, server: Server) -> None:
    train = b"0 1 2\n1 2\n"
    test = b"0 3\n1 1\n"
    files = [
        {"name": "train.txt", "url": server.serve("/train.txt", train, delay=0.3)},
        {"name": "test.txt", "url": server.serve("/test.txt", test, delay=0.3)},
    ]
    put_card(cards, "lg", format="lightgcn", files=files, split={"strategy": "given"})
    results: list[object] = []

    def prepare() -> None:
        try:
            results.append(fetch(get_card("lg")))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [cache / "lg", cache / "lg"]
    # the second waited for the first and found the files in place: one download each
    assert server.hits == {"/train.txt": 1, "/test.txt": 1}
    sums = {
        "train.txt": hashlib.sha256(train).hexdigest(),
        "test.txt": hashlib.sha256(test).hexdigest(),
    }
    expected = "".join(f"{sums[n]}  {n}\n" for n in sorted(sums))
    assert (cache / "lg" / CHECKSUMS).read_text() == expected
    assert leftovers(cache) == []


# ---------------------------------------------------------------------------- statistics


def test_stats_of_ml100k_match_pandas(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("recbole is not installed")
    inter = Path(spec.submodule_search_locations[0]) / "dataset_example/ml-100k/ml-100k.inter"
    frame = pd.read_csv(inter, sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    frame = frame[frame["rating"] >= 4]
    while True:  # 5-core on users only, repeated until stable
        counts = frame.groupby("user_id")["item_id"].transform("size")
        if (counts >= 5).all():
            break
        frame = frame[counts >= 5]
    per_user = frame.groupby("user_id").size()
    per_item = frame.groupby("item_id").size()

    args = ["data", "stats", "ml-100k", "--json", "--set", "rating_threshold=4"]
    assert main([*args, "--set", "min_user_interactions=5"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["users"] == frame["user_id"].nunique() == len(per_user)
    assert numbers["items"] == frame["item_id"].nunique()
    assert numbers["interactions"] == len(frame)
    assert numbers["density"] == pytest.approx(len(frame) / (len(per_user) * len(per_item)))
    assert (numbers["min_per_user"], numbers["max_per_user"]) == (per_user.min(), per_user.max())
    assert numbers["median_per_user"] == np.median(per_user)
    assert (numbers["min_per_item"], numbers["max_per_item"]) == (per_item.min(), per_item.max())
    assert numbers["median_per_item"] == np.median(per_item)
