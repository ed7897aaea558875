"""The files the data layer writes into a (possibly shared) cache: readable by others as the
umask allows (not mkstemp's 0o600), and no temporary file of a killed download left behind."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from recsys.data import features
from recsys.data.catalog import CHECKSUMS, DataConfig, download, load_dataset
from recsys.data.readers import read_atomic, write_atomic
from tests.conftest import file_mode
from tests.data.test_catalog import INTER, put_card


def hidden(folder: Path) -> list[str]:
    """Temporary files (``.<name>.<random>[.part]``) under ``folder``."""
    return sorted(
        p.name for p in folder.rglob(".*") if p.is_file() and not p.name.endswith(".lock")
    )


class Encoder:
    name = "tiny-encoder"

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_downloaded_and_extracted_files_follow_the_umask(
    umask: int, cards: Path, cache: Path, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("toy/toy.inter", INTER)
    archive = tmp_path / "toy.zip"
    archive.write_bytes(buffer.getvalue())
    put_card(
        cards,
        "toy",
        format="atomic",
        root="toy",
        files=[{"name": "toy.zip", "url": archive.as_uri(), "extract": True}],
    )
    assert load_dataset(DataConfig(name="toy")).n_interactions == 5
    folder = cache / "toy"
    for path in (folder / "toy.zip", folder / "toy" / "toy.inter", folder / CHECKSUMS):
        assert file_mode(path) == 0o666 & ~umask, path
    assert file_mode(folder / ".toy.zip.extracted") == 0o666 & ~umask
    assert [n for n in hidden(folder) if n.endswith(".part")] == []

    dest = tmp_path / "plain" / "toy.inter"
    source = tmp_path / "toy.inter"
    source.write_text(INTER)
    download(source.as_uri(), dest, progress=False)
    assert file_mode(dest) == 0o666 & ~umask and dest.read_text() == INTER


def test_written_atomic_files_and_text_cache_follow_the_umask(umask: int, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "toy.inter").write_text(INTER)
    inter = write_atomic(read_atomic(source / "toy.inter"), tmp_path / "out", "toy")
    assert file_mode(inter) == 0o666 & ~umask
    assert hidden(tmp_path / "out") == []

    cache = tmp_path / "cache" / "features" / "text.npz"
    vectors = features.encode_cached(["a", "bb"], Encoder(), cache)
    assert vectors.shape == (2, 2)
    assert file_mode(cache) == 0o666 & ~umask  # another user sharing the cache can read it
    assert hidden(cache.parent) == []


def test_a_killed_downloads_part_file_is_removed_by_the_next_download(
    cards: Path, cache: Path, tmp_path: Path
) -> None:
    source = tmp_path / "toy.inter"
    source.write_text(INTER)
    put_card(cards, "toy", format="atomic", files=[{"name": "toy.inter", "url": source.as_uri()}])
    folder = cache / "toy"
    folder.mkdir(parents=True)
    stale = [folder / ".toy.inter.a1b2c3d4.part", folder / ".toy.inter.k_9xqz0m.part"]
    newer = folder / ".toy.inter.ffff0000.part"  # started after our lock: not ours to remove
    others = [
        folder / ".toy.inter.sha.12345678.part",  # a temporary file of another file
        folder / ".other.inter.12345678.part",
    ]
    past = time.time() - 3600
    for path in [*stale, newer, *others]:
        path.write_bytes(b"half a download")
        os.utime(path, (past, past))
    future = time.time() + 3600
    os.utime(newer, (future, future))

    assert load_dataset(DataConfig(name="toy")).n_interactions == 5
    assert (folder / "toy.inter").read_text() == INTER
    assert not any(p.exists() for p in stale)
    assert newer.exists() and all(p.exists() for p in others)

    # only a download of the file clears its leftovers: a dataset in place is only read
    stale[0].write_bytes(b"x")
    os.utime(stale[0], (past, past))
    assert load_dataset(DataConfig(name="toy")).n_interactions == 5
    assert stale[0].exists()
