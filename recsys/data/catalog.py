"""Dataset cards, downloads with checksums, and :func:`load_dataset`.

A *card* is a YAML file ``datasets/<name>.yaml`` (in the repository, plus any folder listed in
``$RECSYS_DATASET_CARDS``, ``os.pathsep``-separated, whose cards take precedence). It says
where a dataset comes from, its format, checksums, and its default preprocessing and split;
see ``datasets/README.md`` for the list and :class:`DatasetCard` for the fields.

Files live in a cache folder, ``<cache>/<name>/``, where ``<cache>`` is ``DataConfig.cache_dir``,
else ``$RECSYS_DATA_DIR``, else ``~/.cache/recsys/datasets``. A file is downloaded to a
temporary name, checked, and only then moved into place, so a failed or corrupt download never
leaves a file that looks complete. When a card gives no sha256 the first download's checksum is
recorded in ``<cache>/<name>/CHECKSUMS`` ("trust on first use") and checked on every later load.
Archives are extracted safely (no member outside the folder, no links), a fresh archive that
cannot be extracted is removed rather than trusted, and ``<cache>/.<name>.lock`` makes two
processes preparing the same dataset take turns.

The names ``synthetic`` and ``synthetic-<users>x<items>x<interactions>`` need no card: they
load :func:`recsys.data.synthetic.make_synthetic` with those sizes.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import logging
import os
import shutil
import tarfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from recsys._paths import resource_dir
from recsys.errors import ConfigError, DataError, DatasetNotFoundError
from recsys.fileio import atomic_open, atomic_write_bytes, remove_stale_temps

if TYPE_CHECKING:
    from recsys.data.dataset import Dataset

log = logging.getLogger(__name__)

CARDS_DIR = resource_dir("datasets")
"""The shipped card folder: the repository's ``datasets/``, or its copy in an installed wheel."""
CARDS_ENV = "RECSYS_DATASET_CARDS"
"""Extra card folders, ``os.pathsep``-separated; their cards override same-named ones."""
DATA_DIR_ENV = "RECSYS_DATA_DIR"
"""Cache folder for downloaded datasets."""
CHECKSUMS = "CHECKSUMS"
"""Name of the per-dataset file recording ``sha256  file`` lines (trust on first use)."""
LOCK = ".lock"
"""Suffix of ``<cache>/.<name>.lock``: one process at a time prepares a dataset's files."""
DOWNLOAD_TIMEOUT = 30.0
"""Seconds before an unresponsive download is given up."""
PART = ".part"
"""Suffix of the temporary files downloads and extractions write: ``.<file>.<random>.part``."""

DEFAULT_DATASET = "ml-100k"
"""The dataset a config without ``data.name`` and ``data.path`` loads."""

SEPARATORS = {
    "tab": "\t",
    "\\t": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
    "space": " ",
}
"""Names ``data.sep`` may be given as, and the character each stands for."""

Format = Literal["atomic", "movielens", "lightgcn", "mmrec", "csv", "parquet"]
SplitName = Literal["ratio", "temporal", "loo", "given"]  # as recsys.data.split.SplitStrategy

__all__ = [
    "DataConfig",
    "DatasetCard",
    "cache_root",
    "download",
    "fetch",
    "get_card",
    "list_cards",
    "load_dataset",
    "read_path",
    "sha256_file",
]


# ---------------------------------------------------------------------------------------------
# configuration and cards
# ---------------------------------------------------------------------------------------------


class DataConfig(BaseModel):
    """Which dataset to load and how to filter it (the ``data`` section of a run config)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str | None = None
    """A card name (``recsys data list``), or ``synthetic`` / ``synthetic-UxIxN``; left out,
    :data:`DEFAULT_DATASET`, or with ``path`` the files' own name (recorded as null)."""
    path: Path | None = None
    """Local files (a folder or a file) to read instead of a card's source; with a card's
    ``name``, files in that card's layout are read as that dataset (see :func:`load_dataset`)."""
    format: Format | None = None
    """Format of ``path``; detected from the files when left out."""
    columns: dict[str, str] = Field(default_factory=dict)
    """CSV/Parquet column mapping: roles ``user``, ``item``, ``rating``, ``timestamp``."""
    sep: str = ","
    """CSV field separator: one character, or one of the names ``tab`` (also written ``\\t``),
    ``comma``, ``semicolon``, ``pipe``, ``space``, which stand for it."""
    rating_threshold: float | None = None
    """Keep ratings ``>=`` this; None takes the card's default (none for the built-in cards)."""
    min_user_interactions: int = Field(0, ge=0)
    """k-core bound on users; 0 takes the card's default, 1 keeps every user."""
    min_item_interactions: int = Field(0, ge=0)
    """k-core bound on items; 0 takes the card's default, 1 keeps every item."""
    dedup: Literal["last", "first"] = "last"
    """Which row of a repeated user-item pair to keep, by position in the file."""
    cache_dir: Path | None = None
    """Cache folder; None uses ``$RECSYS_DATA_DIR`` or ``~/.cache/recsys/datasets``."""
    seed: int = Field(0, ge=0)
    """Seed of the synthetic generator (only used by ``synthetic*`` names)."""
    label_noise: float = Field(0.0, ge=0.0, lt=1.0)
    """Share of synthetic interactions replaced by random items (``synthetic*`` names only);
    their ratings are 0 (noisy), the others 1 (clean)."""

    @field_validator("sep")
    @classmethod
    def _one_character(cls, value: str) -> str:
        named = SEPARATORS.get(value.lower() if len(value) > 1 else value, value)
        if len(named) != 1 or named in '\r\n"':
            raise ValueError(
                f"must be one character (not a newline or a quote), or one of "
                f"{', '.join(k for k in SEPARATORS if len(k) > 2)}: a tab is written "
                f"--set sep=tab (or --set 'sep=\"\\t\"'), a comma --set sep=comma"
            )
        return named

    @field_validator("path", "cache_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # a run folder records its config; a relative path would point elsewhere when the run
        # is evaluated or resumed from another working directory
        return None if value is None else Path(value).expanduser().absolute()

    @model_validator(mode="after")
    def _default_name(self) -> DataConfig:
        # the default dataset stands in only when there are no files of one's own: a config
        # that gives a path and no name records name null, so reading it back (a run's
        # config.yaml, --resume, tune trials) does not turn the files into the default card
        if self.name is None and self.path is None:
            self.name = DEFAULT_DATASET
        return self


def _relative_path(value: str, what: str) -> str:
    """``value`` if it is a relative path that stays inside its folder, else a ValueError."""
    parts = PurePosixPath(value.replace("\\", "/")).parts
    drive = bool(parts) and len(parts[0]) == 2 and parts[0][1] == ":"  # C: on Windows
    if not parts or value.startswith(("/", "\\")) or drive:
        raise ValueError(f"{what} must be a relative path, got {value!r}")
    if ".." in parts:
        raise ValueError(f"{what} must not contain '..', got {value!r}")
    return value


def _check_sha256(value: str) -> str:
    value = value.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"sha256 must be 64 hex digits, got {value!r}")
    return value


class CardFile(BaseModel):
    """One file of a dataset: a plain file, or an archive to extract."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """File name in ``<cache>/<dataset>/``."""
    url: str | None = None
    """Where to download it; None for files the user must place by hand."""
    sha256: str | None = None
    """Expected checksum; None records the first download's checksum and checks it later."""
    size: int | None = None
    """Size in bytes, informational (progress bar total when the server does not send one)."""
    extract: bool = False
    """Extract ``members`` (all regular files when empty) after download."""
    members: list[str] = Field(default_factory=list)
    """Archive member paths to extract, relative to the archive root."""
    optional: bool = False
    """Load without this file when it is missing."""

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        return None if value is None else _check_sha256(value)

    @field_validator("name")
    @classmethod
    def _name_inside(cls, value: str) -> str:
        # the file is written to <cache>/<dataset>/<name>: it must stay in that folder
        _relative_path(value, "name")
        if value == CHECKSUMS:
            raise ValueError(f"name {value!r} is reserved for the cache's own bookkeeping")
        return value

    @field_validator("members")
    @classmethod
    def _members_inside(cls, value: list[str]) -> list[str]:
        return [_relative_path(member, "each member") for member in value]

    @model_validator(mode="after")
    def _members_need_extract(self) -> CardFile:
        if self.members and not self.extract:
            raise ValueError("members are only read with extract: true")
        return self


class PackageData(BaseModel):
    """Files shipped inside an installed Python package (found without importing it)."""

    model_config = ConfigDict(extra="forbid")

    package: str
    """Top-level package name, e.g. ``recbole``."""
    path: str
    """Folder inside the package, e.g. ``dataset_example/ml-100k``."""
    format: Format = "atomic"
    """Format of the files there."""
    sha256: dict[str, str] = Field(default_factory=dict)
    """File name -> expected checksum; every listed file must exist and match."""

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: dict[str, str]) -> dict[str, str]:
        return {_relative_path(k, "each file name"): _check_sha256(v) for k, v in value.items()}


class CardPreprocessing(BaseModel):
    """Default filters of a dataset (overridden by ``DataConfig``)."""

    model_config = ConfigDict(extra="forbid")

    rating_threshold: float | None = None
    min_user_interactions: int = Field(0, ge=0)
    min_item_interactions: int = Field(0, ge=0)


class CardSplit(BaseModel):
    """Default split of a dataset (``SplitConfig.strategy=None`` takes it)."""

    model_config = ConfigDict(extra="forbid")

    strategy: SplitName = "ratio"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)

    @field_validator("ratios")
    @classmethod
    def _ratios_valid(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        from recsys.data.split import check_ratios

        return check_ratios(value)


class CardStats(BaseModel):
    """Expected sizes after loading with the card's default preprocessing."""

    model_config = ConfigDict(extra="forbid")

    users: int | None = None
    items: int | None = None
    interactions: int | None = None


class DatasetCard(BaseModel):
    """A dataset card: source, files, format, defaults and expected sizes."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """Same as the card's file stem."""
    description: str = ""
    source: str = ""
    """Homepage of the data."""
    citation: str = ""
    license: str = ""
    format: Format
    """Format of the downloaded (or hand-placed) ``files``."""
    root: str = ""
    """Sub-folder of ``<cache>/<name>/`` where the reader looks (an archive's top folder)."""
    files: list[CardFile] = Field(default_factory=list)
    manual: str = ""
    """How to obtain files that have no URL (shown when they are missing)."""
    package_data: PackageData | None = None
    """Preferred source when the package is installed."""
    preprocessing: CardPreprocessing = Field(default_factory=CardPreprocessing)
    split: CardSplit = Field(default_factory=CardSplit)
    stats: CardStats | None = None
    text_fields: list[str] = Field(default_factory=list)
    """Item fields whose text, joined, multimodal models may encode into a derived ``text``
    modality (:mod:`recsys.data.features`; needs ``recsys[text]``)."""
    card_path: Path | None = Field(default=None, exclude=True)
    """Where the card was read from (set by the loader)."""

    @field_validator("root")
    @classmethod
    def _root_inside(cls, value: str) -> str:
        return _relative_path(value, "root") if value else value

    @field_validator("files")
    @classmethod
    def _unique_files(cls, value: list[CardFile]) -> list[CardFile]:
        names = [f.name for f in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"file names must be unique, repeated: {', '.join(repeated)}")
        return value


def card_folders() -> list[Path]:
    """Card folders in increasing priority: the repository's, then ``$RECSYS_DATASET_CARDS``."""
    folders = [CARDS_DIR]
    extra = os.environ.get(CARDS_ENV, "")
    folders += [Path(p).expanduser() for p in extra.split(os.pathsep) if p.strip()]
    return folders


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_card(path: Path) -> DatasetCard:
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"dataset card {path}: cannot read YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"dataset card {path}: expected a mapping of fields")
    try:
        card = DatasetCard.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"dataset card {path}: {problems}") from None
    if card.name != path.stem:
        raise ConfigError(f"dataset card {path}: name {card.name!r} differs from the file name")
    card.card_path = path
    return card


def _card_paths() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in card_folders():
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
                found[path.stem] = path
    return found


def list_cards() -> list[DatasetCard]:
    """Every card, sorted by name (a name in ``$RECSYS_DATASET_CARDS`` overrides the built-in)."""
    return [_read_card(path) for _, path in sorted(_card_paths().items())]


def get_card(name: str) -> DatasetCard:
    """The card named ``name``; an unknown name raises :class:`DatasetNotFoundError`."""
    # a name is a card's file stem, never a path (``../x`` would read a card elsewhere)
    plain = bool(name) and not name.startswith(".") and not set(name) & {"/", "\\", os.sep}
    for folder in reversed(card_folders()) if plain else []:
        for suffix in (".yaml", ".yml"):
            path = folder / f"{name}{suffix}"
            if path.is_file():
                return _read_card(path)
    names = sorted(_card_paths())
    close = difflib.get_close_matches(name, [*names, "synthetic"], n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise DatasetNotFoundError(
        f"unknown dataset {name!r}; {hint}known cards: {', '.join(names) or 'none'} (also "
        f"synthetic, synthetic-<users>x<items>x<interactions>); or set data.path to local files"
    )


# ---------------------------------------------------------------------------------------------
# cache, checksums, downloads
# ---------------------------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$RECSYS_DATA_DIR``, else the user cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "recsys" / "datasets"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_checksums(folder: Path) -> dict[str, str]:
    path = folder / CHECKSUMS
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            out[parts[1].strip()] = parts[0].lower()
    return out


def _record_checksum(folder: Path, name: str, digest: str) -> None:
    """Add or replace ``name``'s line in ``CHECKSUMS`` (written atomically)."""
    sums = _read_checksums(folder)
    sums[name] = digest
    text = "".join(f"{value}  {key}\n" for key, value in sorted(sums.items()))
    _atomic_write(folder / CHECKSUMS, text.encode("utf-8"))


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data, suffix=PART, fsync=False)


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    timeout: float = DOWNLOAD_TIMEOUT,
    size: int | None = None,
    progress: bool = True,
) -> str:
    """Download ``url`` to ``dest`` through a temporary file; return the file's sha256.

    Any URL urllib understands works (``https://``, ``http://``, ``file://``). The file only
    appears at ``dest`` once it is complete and, when ``sha256`` is given, matches it.

    Raises:
        DatasetNotFoundError: the URL cannot be reached or answers with an error; the message
            says where to put the file by hand.
        DataError: the checksum differs from ``sha256`` (the download is removed).
    """
    import urllib.error
    import urllib.request
    from http.client import HTTPException

    from tqdm.auto import tqdm

    target = Path(dest)
    digest = hashlib.sha256()
    received = 0
    announced: int | None = None
    with atomic_open(target, "wb", suffix=PART) as out:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "recsys"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = (response.headers.get("Content-Length") or "").strip()
                announced = int(length) if length.isdigit() else None
                total = announced if announced is not None else size
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=target.name,
                    disable=None if progress else True,
                ) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(exc, urllib.error.HTTPError):
                reason = f"HTTP {exc.code} {exc.reason}"
            elif isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
                reason = f"no answer within {timeout:g} s (timed out)"
            raise DatasetNotFoundError(
                f"cannot download {url}: {reason}. Download it by hand into "
                f"{target.parent}{os.sep} (as {target.name}), or pass data.path=<folder or "
                f"file> to read local files"
            ) from exc
        if announced is not None and received != announced:
            # http.client's read(n) returns b"" when the connection drops early instead of
            # raising; without this check a cut-off download would be taken as complete
            raise DatasetNotFoundError(
                f"cannot download {url}: the connection closed after {received} of "
                f"{announced} bytes; the partial download was removed, try again"
            )
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise DataError(
                f"{target.name} (from {url}): checksum mismatch: expected sha256 {sha256}, "
                f"got {actual}; the download was removed"
            )
    return actual


MISMATCH = ".mismatch"
"""Suffix a file that fails its checksum is moved aside to (``<file>.mismatch``), not deleted:
it may have been placed by hand."""


def _verify(
    folder: Path, spec: CardFile, sums: dict[str, str], card_path: Path | str | None = None
) -> str | None:
    """Check a present file against the card's or the recorded checksum.

    Returns the file's sha256 when neither exists (to be recorded once the file proved usable),
    else None. On a mismatch the files extracted from an archive are removed (they came from
    a file that is not the trusted one, and would otherwise be used as they are), and a file
    with a URL is moved aside to ``<file>.mismatch`` so that the next load downloads it
    afresh; the error says which of these happened and what to do.
    """
    path = folder / spec.name
    expected = spec.sha256 or sums.get(spec.name)
    actual = sha256_file(path)
    if expected is None:
        return actual
    if actual == expected:
        return None
    where = card_path or "the card"
    origin = "the card" if spec.sha256 else f"{folder / CHECKSUMS} (first download)"
    removed = _forget_extraction(folder, spec)
    done = f"the files extracted from it were removed ({', '.join(removed)}); " if removed else ""
    if spec.url is not None:
        aside = path.with_name(path.name + MISMATCH)
        os.replace(path, aside)
        action = f"{done}it was moved aside to {aside.name}; load again to download it afresh"
        if not spec.sha256:
            action += (
                f" (if you placed it there on purpose, e.g. a newer release, delete its line "
                f"from {folder / CHECKSUMS} and move it back)"
            )
    elif spec.sha256:
        action = (
            f"{done}the card expects another file: get the release it describes, or fix or "
            f"remove files[].sha256 in {where}"
        )
    else:
        action = f"{done}if you replaced it on purpose, delete its line from {folder / CHECKSUMS}"
    raise DataError(
        f"{path}: checksum mismatch: expected sha256 {expected} (from {origin}), got {actual}; "
        f"{action}"
    )


def _forget_extraction(folder: Path, spec: CardFile) -> list[str]:
    """Remove what extracting ``spec`` left, so that the archive is extracted again: its
    listed members and its ``.extracted`` marker. Returns the members removed."""
    if not spec.extract:
        return []
    (folder / f".{spec.name}.extracted").unlink(missing_ok=True)
    removed = []
    for name in spec.members:
        target = folder / name
        if target.is_file():
            target.unlink()
            removed.append(name)
    return removed


def _copy_atomic(source: BinaryIO, path: Path) -> None:
    """Stream ``source`` to ``path`` through a temporary file in the same folder."""
    with atomic_open(path, "wb", suffix=PART) as out:
        shutil.copyfileobj(source, out, 1 << 20)


def _zip_is_link(info: zipfile.ZipInfo) -> bool:
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def _extract(
    archive: Path,
    members: list[str],
    dest: Path,
    reserved: frozenset[str] = frozenset(),
    locked_at: float | None = None,
) -> None:
    """Extract ``members`` (all regular files when empty) of a zip or tar archive safely.

    Every member is checked before anything is written: a path that would land outside
    ``dest`` (``..``, absolute), onto the cache's own files (``CHECKSUMS``, the archive,
    ``reserved`` names such as the card's other files, ``.extracted`` markers, temporary
    ``.part`` files) or into another member (``a`` and ``a/b``) is an error, links are never
    extracted, and each file is written through a temporary name, so an interrupted
    extraction leaves no half file. Any failure (a corrupt archive, an unsupported
    compression, an OS error) is a :class:`DataError`, and the members this call already
    wrote are removed. ``locked_at`` (see :func:`_prepare_file`): temporary files of a
    member older than that, left by an extraction that was killed, are removed first.
    """
    root = dest.resolve()
    own = {CHECKSUMS, archive.name, *reserved}

    def target_of(member: str) -> Path:
        target = (root / member).resolve()
        if root not in target.parents:
            raise DataError(f"{archive}: member {member!r} would be written outside {dest}")
        inside = target.relative_to(root).as_posix()
        name = target.name
        if inside in own or (name.startswith(".") and name.endswith((".extracted", PART))):
            raise DataError(
                f"{archive}: member {member!r} would overwrite the cache's own file {inside}; "
                f"list the members to extract in the card's files[].members"
            )
        return target

    def absent(member: str, present: list[str], links: set[str]) -> DataError:
        if member in links:
            return DataError(f"{archive}: member {member!r} is a link, which is never extracted")
        shown = ", ".join(present[:10]) + (
            f" and {len(present) - 10} more" if len(present) > 10 else ""
        )
        return DataError(
            f"{archive}: the card lists member {member!r}, which the archive does not contain "
            f"(its files: {shown or 'none'})"
        )

    def plan(present: list[str], links: set[str]) -> list[tuple[str, Path]]:
        chosen = members or present
        for member in chosen:
            if member not in present:
                raise absent(member, present, links)
        planned = [(member, target_of(member)) for member in chosen]
        targets = {target for _, target in planned}
        for member, target in planned:
            if any(parent in targets for parent in target.parents):
                raise DataError(
                    f"{archive}: member {member!r} would be written inside another member, "
                    f"which is a file"
                )
        for _, target in planned if locked_at is not None else []:
            for stale in remove_stale_temps(target, suffix=PART, older_than=locked_at):
                log.info("removed %s, left by an interrupted extraction", stale)
        return planned

    written: list[Path] = []

    def write(handle: BinaryIO, target: Path) -> None:
        existed = target.exists()
        _copy_atomic(handle, target)
        if not existed:
            written.append(target)

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = [i for i in zf.infolist() if not i.is_dir()]
                links = {i.filename for i in infos if _zip_is_link(i)}
                present = sorted(i.filename for i in infos if i.filename not in links)
                for member, target in plan(present, links):
                    with zf.open(member) as handle:
                        write(handle, target)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                everything = tf.getmembers()
                files = {i.name: i for i in everything if i.isfile()}
                links = {i.name for i in everything if i.issym() or i.islnk()}
                for member, target in plan(list(files), links):
                    handle = tf.extractfile(files[member])
                    assert handle is not None
                    with handle:
                        write(handle, target)
        else:
            raise DataError(f"{archive}: not a zip or tar archive")
    except BaseException as exc:
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(exc, (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error)):
            raise DataError(f"{archive}: corrupt archive: {exc}") from exc
        if isinstance(exc, NotImplementedError):  # e.g. a zip compression Python lacks
            raise DataError(f"{archive}: cannot extract: {exc}") from exc
        if isinstance(exc, OSError):
            what = f"{exc.filename}: " if exc.filename else ""
            raise DataError(
                f"{archive}: cannot extract: {what}{exc.strerror or exc}"
                f"{' (members written by this extraction were removed)' if written else ''}"
            ) from exc
        raise


def _members_present(folder: Path, spec: CardFile) -> bool:
    return bool(spec.members) and all((folder / m).is_file() for m in spec.members)


@dataclass
class _Source:
    folder: Path
    format: Format


def _package_folder(pkg: PackageData) -> Path | None:
    """The package's data folder, found without importing the package; None if absent."""
    try:
        spec = importlib.util.find_spec(pkg.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        folder = Path(base) / pkg.path
        if folder.is_dir() and all((folder / name).is_file() for name in pkg.sha256):
            return folder
    return None


def _verify_package(folder: Path, pkg: PackageData) -> None:
    for name, expected in pkg.sha256.items():
        actual = sha256_file(folder / name)
        if actual != expected.lower():
            raise DataError(
                f"{folder / name}: checksum mismatch: expected sha256 {expected} (from the "
                f"card's package_data), got {actual}; the installed {pkg.package} ships a "
                f"different file"
            )


def _cache_problem(name: str, cache_dir: Path | None, problem: str) -> DataError:
    root = cache_root(cache_dir)
    if cache_dir is not None:
        origin = "data.cache_dir"
    elif os.environ.get(DATA_DIR_ENV):
        origin = f"${DATA_DIR_ENV}"
    else:
        origin = "the default cache folder"
    return DataError(
        f"cache folder {root} (from {origin}) cannot hold dataset {name!r}: {problem}; set "
        f"{DATA_DIR_ENV} or data.cache_dir to a writable folder"
    )


def _dataset_folder(name: str, cache_dir: Path | None, *, create: bool) -> Path:
    """``<cache>/<name>/`` (created when ``create``); an unusable cache folder is an error
    naming the setting it came from."""
    folder = cache_root(cache_dir) / name
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise _cache_problem(name, cache_dir, f"{existing} is a file, not a folder")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _cache_problem(name, cache_dir, exc.strerror or str(exc)) from exc
    return folder


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[float | None]:
    """Hold ``<cache>/.<name>.lock``, so that two processes preparing the same dataset take
    turns (the second finds the files in place) instead of both downloading and racing on
    ``CHECKSUMS``. Without ``fcntl`` (Windows) or a writable cache, no lock is taken: every
    file is still moved into place atomically.

    Yields the time (:func:`time.time`) the lock was taken, None when none was: a download's
    temporary file older than that was left by a process that died mid-download.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield None
        return
    try:
        handle = open(folder.parent / f".{folder.name}{LOCK}", "a+b")  # noqa: SIM115
    except OSError:
        yield None
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process preparing %s", folder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield time.time()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _locate(card: DatasetCard, cache_dir: Path | None) -> _Source:
    """Where to read ``card``'s files from: installed package data, else the cache (download)."""
    if card.package_data is not None:
        package = _package_folder(card.package_data)
        if package is not None:
            _verify_package(package, card.package_data)
            return _Source(package, card.package_data.format)
    if not card.files:
        raise DatasetNotFoundError(
            f"dataset {card.name!r}: the card lists no files and its package_data "
            f"({card.package_data.package if card.package_data else 'none'}) is not installed"
        )
    folder = _dataset_folder(card.name, cache_dir, create=False)
    missing_manual = [
        f.name
        for f in card.files
        if f.url is None and not f.optional and not _file_ready(folder, f)
    ]
    if missing_manual:
        manual = card.manual.strip()
        if manual and not manual.endswith((".", "!", "?", ":")):
            manual += "."
        how = f" {manual}" if manual else ""
        raise DatasetNotFoundError(
            f"dataset {card.name!r}: {', '.join(missing_manual)} cannot be downloaded "
            f"automatically.{how} Place the files in {folder}{os.sep} or pass "
            f"data.path=<folder with the files>. Source: {card.source or 'see the card'}"
        )
    _dataset_folder(card.name, cache_dir, create=True)
    downloads = [
        f.url
        for f in card.files
        if f.url is not None and not (folder / f.name).is_file() and not _extracted(folder, f)
    ]
    if downloads and not os.access(folder, os.W_OK | os.X_OK):
        raise _cache_problem(card.name, cache_dir, f"{folder} is not writable")
    with _locked(folder) as locked_at:
        sums = _read_checksums(folder)
        for index, spec in enumerate(card.files):
            _prepare_file(card, index, spec, folder, sums, locked_at)
    source = folder / card.root if card.root else folder
    if not source.is_dir():
        found = sorted(
            p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name != CHECKSUMS
        )
        raise DataError(
            f"dataset {card.name!r}: the card's root {card.root!r} is not a folder in {folder} "
            f"(it holds: {', '.join(found) or 'nothing'}); fix `root` in "
            f"{card.card_path or 'the card'}"
        )
    return _Source(source, card.format)


def _prepare_file(
    card: DatasetCard,
    index: int,
    spec: CardFile,
    folder: Path,
    sums: dict[str, str],
    locked_at: float | None = None,
) -> None:
    """Download, check and extract one of ``card``'s files (``files[index]``) as needed.

    A checksum is recorded (trust on first use) only once the file proved usable: a fresh
    download that is not a readable archive is removed, not trusted by the next run.
    ``locked_at`` is when this process took the dataset's lock (None: no lock): a download
    first removes the temporary files of earlier downloads of the same file older than
    that, which processes killed mid-download left behind.
    """
    archive = folder / spec.name
    fresh = False
    pending: str | None = None  # sha256 to record once the file proved usable
    if spec.url is not None and not archive.is_file() and not _extracted(folder, spec):
        if locked_at is not None:
            # under the lock no other process downloads this file: any temporary file of it
            # from before the lock is a leftover of a process that died mid-download
            for stale in remove_stale_temps(archive, suffix=PART, older_than=locked_at):
                log.info("removed %s, left by an interrupted download", stale)
        log.info("downloading %s to %s", spec.url, archive)
        recorded = sums.get(spec.name)
        try:
            digest = download(spec.url, archive, sha256=spec.sha256 or recorded, size=spec.size)
        except DataError as exc:
            if spec.sha256 is None and recorded is not None:
                raise DataError(
                    f"{exc} (the expected sha256 was recorded in {folder / CHECKSUMS} on the "
                    f"first download; delete that line if the file changed upstream)"
                ) from exc
            raise
        fresh = True
        if spec.sha256 is None and recorded is None:
            pending = digest
    if not archive.is_file():
        return
    if not fresh:
        pending = _verify(folder, spec, sums, card.card_path or card.name)
    if spec.extract and not _extracted(folder, spec):
        reserved = frozenset(f.name for f in card.files)
        try:
            _extract(archive, spec.members, folder, reserved, locked_at)
        except DataError as exc:
            where = f"dataset card {card.card_path or card.name}, files[{index}] ({spec.name})"
            if fresh:
                archive.unlink(missing_ok=True)
                action = "the download was removed"
            elif spec.url is not None:
                action = (
                    f"delete {archive} (and its line in {folder / CHECKSUMS}) to download it again"
                )
            else:
                action = f"replace {archive}"
            raise DataError(f"{exc} ({where}); {action}") from exc
        if not spec.members:
            _atomic_write(folder / f".{spec.name}.extracted", b"")
    if pending is not None:
        _record_checksum(folder, spec.name, pending)
        sums[spec.name] = pending
        log.info("recorded sha256 %s of %s (trust on first use)", pending, archive)


def _extracted(folder: Path, spec: CardFile) -> bool:
    """Whether an archive's members are in place (a marker file when it lists none)."""
    if spec.members:
        return _members_present(folder, spec)
    return (folder / f".{spec.name}.extracted").is_file()


def _file_ready(folder: Path, spec: CardFile) -> bool:
    if spec.extract and _extracted(folder, spec):
        return True
    return (folder / spec.name).is_file()


def fetch(card: DatasetCard, cache_dir: Path | None = None) -> Path:
    """The folder holding ``card``'s files, downloading (and checking) them if needed.

    An installed ``package_data`` source is preferred (its checksums are verified); otherwise
    the files are looked up in, or downloaded to, ``<cache>/<name>/``. Files without a URL must
    be placed there by hand (the error says where).
    """
    return _locate(card, cache_dir).folder


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


_MOVIELENS_FILES = ("u.data", "ratings.dat", "ratings.csv")
_LIGHTGCN_FILES = ("train.txt", "test.txt")


def detect_format(path: str | os.PathLike[str]) -> Format | None:
    """Guess the format of a file or folder from names and headers.

    The raw files of the releases are known by name (``u.data``, ``ratings.dat``,
    ``ratings.csv``: MovieLens; ``train.txt``, ``test.txt``: LightGCN), except that a file
    ``ratings.csv`` whose header lacks MovieLens' ``userId`` and ``movieId`` is a generic
    ``csv`` table. ``.inter`` files are told apart by their header.
    """
    p = Path(path)
    if p.is_file():
        if p.name == "ratings.csv" and not _movielens_csv(p):
            return "csv"
        if p.name in _MOVIELENS_FILES:
            return "movielens"
        if p.name in _LIGHTGCN_FILES:
            return "lightgcn"
        suffix = p.suffix.lower()
        if suffix in (".parquet", ".pq"):
            return "parquet"
        if suffix in (".csv", ".tsv"):
            return "csv"
        if suffix == ".inter":
            return _inter_kind(p)
        return None
    if not p.is_dir():
        return None
    candidates = [p, *sorted(c for c in p.iterdir() if c.is_dir())]
    for folder in candidates:
        if (folder / "train.txt").is_file():
            return "lightgcn"
        if any((folder / n).is_file() for n in _MOVIELENS_FILES):
            return "movielens"
        inters = sorted(folder.glob("*.inter"))
        if inters:
            return _inter_kind(inters[0])
    return None


def _movielens_csv(path: Path) -> bool:
    """Whether the header of ``path`` names MovieLens' ``userId`` and ``movieId`` columns."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            header = fh.readline().removeprefix("\ufeff")
    except OSError:
        return True  # the reader names the problem
    names = {name.strip().strip('"') for name in header.split(",")}
    return {"userId", "movieId"} <= names


def _named_format(path: Path) -> str | None:
    """The raw file name that made :func:`detect_format` take ``path`` for MovieLens or
    LightGCN files (``ratings.csv``, ``folder/u.data``, ...), else None."""
    names = (*_MOVIELENS_FILES, *_LIGHTGCN_FILES)
    if path.is_file():
        return path.name if path.name in names else None
    for folder in [path, *sorted(c for c in path.iterdir() if c.is_dir())]:
        for name in names:
            if (folder / name).is_file():
                return str((folder / name).relative_to(path))
    return None


def _maybe_own_table(path: Path, fmt: Format, named: str | None) -> bool:
    """Whether ``path``, taken for ``fmt`` files by the raw file name ``named``, may be a
    table of the user's own: a file given by that name, or a folder whose ``ratings.csv``
    lacks MovieLens' columns (a folder with ``u.data`` or ``train.txt`` is a release)."""
    if fmt not in ("movielens", "lightgcn") or named is None:
        return False
    if path.is_file():
        return True
    return PurePosixPath(named).name == "ratings.csv" and not _movielens_csv(path / named)


def _inter_kind(path: Path) -> Format:
    """``atomic`` when the header has ``name:type`` fields, else ``mmrec`` (whose reader
    names a RecBole header that lacks its types rather than MMRec's missing columns)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError:
        return "atomic"
    return "atomic" if ":" in header else "mmrec"


def read_path(
    path: str | os.PathLike[str],
    fmt: Format,
    *,
    name: str | None = None,
    columns: dict[str, str] | None = None,
    sep: str = ",",
    keep: Literal["last", "first"] = "last",
) -> Dataset:
    """Read local files in format ``fmt`` with the matching reader of :mod:`recsys.data.readers`."""
    from recsys.data import readers

    p = Path(path)
    if not p.exists():
        raise DatasetNotFoundError(f"{p}: no such file or folder")
    if fmt == "atomic":
        return readers.read_atomic(p, name, keep=keep)
    if fmt == "movielens":
        return readers.read_movielens(p, keep=keep)
    if fmt == "lightgcn":
        return readers.read_lightgcn(p, keep=keep)
    if fmt == "mmrec":
        return readers.read_mmrec(p, name, keep=keep)
    if p.is_dir():
        raise DataError(f"{p}: format {fmt!r} needs a file, not a folder")
    if fmt == "csv" and p.suffix.lower() == ".tsv" and sep == ",":
        sep = "\t"
    return readers.read_table(p, columns or None, sep, keep=keep)


def _card_exists(name: str) -> bool:
    return any((f / f"{name}{s}").is_file() for f in card_folders() for s in (".yaml", ".yml"))


def _card_of_files(card: DatasetCard, path: Path, fmt: Format | None) -> DatasetCard | None:
    """``card`` when the files at ``path`` (format ``fmt``, None when undetected) can be its
    own: in a format the card reads and, for RecBole atomic files (named after their
    dataset), ``<name>.inter``. Otherwise None, with a warning: other files are not that
    dataset, and its defaults (split, filters, text fields) do not describe them. A config
    written before ``name`` could be left out records the default ``ml-100k`` next to a
    user's path; this is what keeps such files their own."""
    if fmt is None:
        return card  # the card says how to read them
    formats = {card.format} | ({card.package_data.format} if card.package_data else set())
    inter = f"{card.name}.inter"
    if fmt not in formats:
        what = f"{fmt}, not {'/'.join(sorted(formats))}"
    elif fmt == "atomic" and not (
        path.name == inter if path.is_file() else (path / inter).is_file()
    ):
        what = f"no {inter}"
    else:
        return card
    log.warning(
        "data.name=%r names a dataset card, but data.path=%s does not hold its files (%s): "
        "read as a dataset of its own, without the card's defaults; leave data.name out to "
        "read it so without this warning",
        card.name,
        path,
        what,
    )
    return None


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the dataset ``cfg`` names: card or path -> reader -> preprocessing.

    * ``cfg.path`` set: read those files (format from ``cfg.format``, else detected, else the
      card's when ``cfg.name`` names a card). They are read as that card's dataset (its name
      and defaults) only when they are in its layout (:func:`_card_of_files`); otherwise the
      dataset is named ``cfg.name`` when that is not a card's name, else after the file or
      folder, and no card's defaults apply.
    * else ``synthetic`` / ``synthetic-UxIxN``: generate it (``cfg.seed``).
    * else the card ``cfg.name``: fetch its files (installed package data, cache, download).

    Then the rating threshold and k-core filter run, each taking the card's default where
    ``cfg`` leaves it unset (None / 0). With the card's defaults, the sizes are compared with
    the card's ``stats`` and a mismatch beyond 1% is a warning.
    """
    from recsys.data.preprocess import PreprocessConfig, preprocess
    from recsys.data.readers import DEFAULT_COLUMNS
    from recsys.data.synthetic import make_synthetic, parse_synthetic_name

    if cfg.label_noise and (cfg.path is not None or parse_synthetic_name(cfg.name) is None):
        raise ConfigError(
            f"data.label_noise={cfg.label_noise} applies only to the synthetic datasets "
            f"(synthetic, synthetic-UxIxN), not {str(cfg.path or cfg.name)!r}"
        )
    card: DatasetCard | None = None
    table = False  # read from a CSV/Parquet table, whose columns data.columns maps
    if cfg.path is not None:
        if not Path(cfg.path).exists():
            raise DatasetNotFoundError(f"data.path={cfg.path}: no such file or folder")
        fmt = cfg.format or detect_format(cfg.path)
        named = _named_format(Path(cfg.path)) if cfg.format is None else None
        if fmt in ("movielens", "lightgcn") and named is not None:
            fmt = _table_options_win(cfg, fmt, named)
        named_card = cfg.name is not None and _card_exists(cfg.name)
        if named_card:
            card = _card_of_files(get_card(cfg.name), Path(cfg.path), fmt)
        fmt = fmt or (card.format if card else None)
        if fmt is None:
            raise ConfigError(
                f"data.path={cfg.path}: cannot tell its format; set data.format to one of "
                f"atomic, movielens, lightgcn, mmrec, csv, parquet"
            )
        stem = card.name if card is not None and fmt == "atomic" else None
        try:
            ds = read_path(
                cfg.path, fmt, columns=cfg.columns, sep=cfg.sep, keep=cfg.dedup, name=stem
            )
        except DataError as exc:
            if not _maybe_own_table(Path(cfg.path), fmt, named) or card is not None:
                raise
            raise type(exc)(
                f"{exc} (data.path={cfg.path} was taken for {fmt} files by the file name "
                f"{named}; if it is a table of your own, set data.format=csv"
                f"{'' if Path(cfg.path).is_file() else ' and point data.path at the file'})"
            ) from exc
        if card is not None:
            ds.name = card.name
        elif cfg.name is not None and not named_card:
            ds.name = cfg.name  # a name the user gave their own files
        table = fmt in ("csv", "parquet")
    elif (sizes := parse_synthetic_name(cfg.name)) is not None:
        ds = make_synthetic(*sizes, seed=cfg.seed, name=cfg.name, label_noise=cfg.label_noise)
    else:
        if cfg.format is not None:
            raise ConfigError(
                f"data.format={cfg.format!r} applies only with data.path; the card "
                f"{cfg.name!r} sets its own format"
            )
        card = get_card(cfg.name)
        source = _locate(card, cfg.cache_dir)
        atomic_name = card.name if source.format == "atomic" else None
        ds = read_path(source.folder, source.format, name=atomic_name, keep=cfg.dedup)
        ds.name = card.name

    if card is not None:
        _note_missing_text_fields(ds, card, cfg.path)
    defaults = card.preprocessing if card is not None else CardPreprocessing()
    options = PreprocessConfig(
        rating_threshold=(
            cfg.rating_threshold if cfg.rating_threshold is not None else defaults.rating_threshold
        ),
        min_user_interactions=cfg.min_user_interactions or defaults.min_user_interactions,
        min_item_interactions=cfg.min_item_interactions or defaults.min_item_interactions,
    )
    if table and options.rating_threshold is not None and ds.ratings is None:
        raise DataError(
            f"{ds.name}: rating_threshold={options.rating_threshold:g} needs ratings, but the "
            f"dataset has none: {cfg.path} has no column {DEFAULT_COLUMNS['rating']!r} and no "
            f"other is mapped; name its rating column with data.columns.rating=<column>"
        )
    ds = preprocess(ds, options)
    ds.cache_dir = str(cfg.cache_dir) if cfg.cache_dir is not None else None
    if card is not None:
        ds.default_split = card.split.model_dump()
    default_filters = options == PreprocessConfig(**defaults.model_dump())
    if card is not None and card.stats is not None and cfg.path is None and default_filters:
        _check_stats(ds, card)
    return ds


def _note_missing_text_fields(ds: Dataset, card: DatasetCard, path: Path | None) -> None:
    """Log why the derived ``text`` modality will be missing when the card's ``text_fields``
    are not item fields of the files read (MovieLens-100k's exist only in RecBole's files)."""
    missing = [f for f in card.text_fields if f not in ds.item_features]
    if not missing:
        return
    pkg = card.package_data
    why = ""
    if path is None and pkg is not None and _package_folder(pkg) is None:
        why = (
            f"; they exist only in its package_data source, the files of the {pkg.package!r} "
            f"package, which is not installed, so the card's own files were read"
        )
    log.info(
        "dataset %r: the card's text_fields %s are not item fields of %s (item fields: %s)%s; "
        "multimodal models get no derived text modality from it",
        card.name,
        ", ".join(missing),
        path or "the files read",
        ", ".join(sorted(ds.item_features)) or "none",
        why,
    )


def _table_options_win(cfg: DataConfig, fmt: Format, named: str) -> Format:
    """The format to read ``cfg.path`` in when its file name made it ``fmt`` (MovieLens or
    LightGCN): ``csv`` for a file when ``data.columns`` or ``data.sep``, which only a table
    reads, were given (the user means their own table); else ``fmt``, with a warning that
    those options are not used."""
    given = [key for key, on in (("columns", bool(cfg.columns)), ("sep", cfg.sep != ",")) if on]
    if not given:
        return fmt
    keys = " and ".join(f"data.{key}" for key in given)
    if Path(cfg.path or "").is_file():
        log.info(
            "data.path=%s: read as a csv table, as %s apply only to one (its name %s is "
            "also that of %s files; set data.format to choose)",
            cfg.path,
            keys,
            named,
            fmt,
        )
        return "csv"
    log.warning(
        "data.path=%s holds %s and is read as %s files, which do not use %s; to read a table "
        "of your own, point data.path at it and set data.format=csv",
        cfg.path,
        named,
        fmt,
        keys,
    )
    return fmt


def _check_stats(ds: Dataset, card: DatasetCard) -> None:
    """Warn (once) when the loaded sizes differ from the card's ``stats`` by more than 1%."""
    assert card.stats is not None
    found = {"users": ds.n_users, "items": ds.n_items, "interactions": ds.n_interactions}
    off = []
    for key, value in found.items():
        expected = getattr(card.stats, key)
        if expected and abs(value - expected) > 0.01 * expected:
            off.append(f"{value} {key} (the card expects {expected})")
    if off:
        warnings.warn(
            f"dataset {card.name!r}: loaded {', '.join(off)}; the files may be a different release",
            stacklevel=3,
        )
