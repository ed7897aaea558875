"""Train/validation/test splits, seeded and vectorised.

Every splitter is a pure function of the dataset and a seed, and returns a :class:`Split` of
three binary CSR matrices with the dataset's shape. Per-user work is done with group-wise
sorting over the whole interaction array, never a Python loop over users.

Strategies (RecBole's names in brackets):

- ``ratio``: per user, random order, ratios such as 8:1:1 [``RO``, ``RS``].
- ``temporal``: per user, by timestamp, ratios [``TO``, ``RS``].
- ``loo``: leave-one-out, the last item (by time, or random) for test and the one before for
  validation [``TO``/``RO``, ``LS``].
- ``given``: a published split read with the dataset (``Dataset.split_labels``); where it has
  no validation part, validation is carved out of each user's training items, seeded, so
  early stopping never sees the test set.
- ``heldout_users``: strong generalisation (Liang et al., WWW 2018): whole users are held out
  for validation and test; each held-out user's history is split at random into fold-in items
  (:attr:`Split.foldin`, the model's input at scoring time, masked from the ranking) and target
  items (``valid`` / ``test``). Only fold-in models (``Recommender.fold_in``) can score users
  they never saw in training.
"""

from __future__ import annotations

import logging
import math
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError, DataError
from recsys.fileio import atomic_open

log = logging.getLogger(__name__)

SplitStrategy = Literal["ratio", "temporal", "loo", "given", "heldout_users"]


def check_ratios(value: tuple[float, float, float]) -> tuple[float, float, float]:
    """``value`` if it is a valid train/validation/test split (ValueError otherwise)."""
    # NaN compares false with everything, so it would pass the range checks below
    if (
        not all(math.isfinite(r) for r in value)
        or any(r < 0 for r in value)
        or value[0] <= 0
        or abs(sum(value) - 1.0) > 1e-6
    ):
        raise ValueError(
            f"ratios must be finite, non-negative, train > 0, summing to 1; got {value}"
        )
    return value


def _checked_ratios(ratios: tuple[float, float, float]) -> tuple[float, float, float]:
    """``ratios`` as a tuple if valid, else :class:`ConfigError` naming ``split.ratios``
    (the splitters are public: ``(8, 1, 1)`` would otherwise put everything in test)."""
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3:
        raise ConfigError(f"split.ratios must be three shares (train, valid, test); got {ratios}")
    try:
        return check_ratios(ratios)
    except ValueError as exc:
        raise ConfigError(f"split.ratios: {exc}") from None


def _check_timestamps(ds: Dataset) -> None:
    """:class:`DataError` naming the first interaction whose timestamp is NaN (it cannot be
    ordered, and a sort would silently put it last, i.e. in test)."""
    bad = np.isnan(ds.timestamps)
    if bad.any():
        users, items = ds.coo()
        k = int(np.argmax(bad))
        raise DataError(
            f"{ds.name}: the interaction of user {ds.users.raw([users[k]])[0]!r} with item "
            f"{ds.items.raw([items[k]])[0]!r} has no timestamp (NaN), so it cannot be ordered "
            f"by time ({int(bad.sum())} such interactions)"
        )


class SplitConfig(BaseModel):
    """How to split interactions into train, validation and test."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    strategy: SplitStrategy | None = None
    """``ratio``, ``temporal``, ``loo`` or ``given``; None takes the dataset card's default."""
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Train, validation and test shares for ``ratio`` and ``temporal``."""
    valid_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of each user's training items carved out for validation in a ``given`` split
    that has no validation part."""
    clean_test_min_rating: float | None = None
    """Noisy-train / clean-test protocol (Wang et al., WSDM 2021): when set, the test part
    keeps only interactions rated ``>=`` this (MovieLens: 4); lower-rated ones stay in train
    and validation as noisy positives but are never test targets. Needs ratings (for the
    synthetic data, the noise flags: 1 clean, 0 noisy, so use 1)."""
    seed: int = Field(2020, ge=0)
    """Seed of the random order (``ratio``, ``given``, ``heldout_users``; ties in ``temporal``)."""
    heldout_users: tuple[float, float] = (0.1, 0.1)
    """``heldout_users``: validation and test users held out, each a count (>= 1, a whole
    number) or a share of the users (< 1)."""
    foldin_ratio: float = Field(0.8, gt=0.0, lt=1.0)
    """``heldout_users``: share of each held-out user's items given to the model as fold-in;
    the rest are the targets."""
    min_heldout_items: int = Field(5, ge=2)
    """``heldout_users``: a held-out user with fewer items keeps them all as fold-in."""

    @field_validator("ratios", mode="before")
    @classmethod
    def _ratios_three(cls, value: object) -> object:
        # pydantic would name the missing position ("split.ratios.2: Field required")
        wrong_length = isinstance(value, list | tuple) and len(value) != 3
        if wrong_length or isinstance(value, int | float):
            raise ValueError(
                "needs three shares (train, valid, test) summing to 1, e.g. [0.8, 0.1, 0.1]"
            )
        return value

    @field_validator("ratios")
    @classmethod
    def _ratios_valid(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        return check_ratios(value)

    @field_validator("heldout_users")
    @classmethod
    def _heldout_valid(cls, value: tuple[float, float]) -> tuple[float, float]:
        for v in value:
            if v <= 0 or (v >= 1 and v != int(v)):
                raise ValueError(
                    f"heldout_users must be positive counts (whole numbers) or shares < 1; "
                    f"got {value}"
                )
        return value


@dataclass
class Split:
    """Disjoint binary CSR matrices of shape ``n_users x n_items``.

    ``foldin`` (``heldout_users`` splits only) holds the held-out users' fold-in items: the
    history a fold-in model scores them from, masked from their ranking. Their targets are in
    ``valid`` (validation users) and ``test`` (test users); their ``train`` rows are empty.
    """

    train: sp.csr_array
    valid: sp.csr_array
    test: sp.csr_array
    foldin: sp.csr_array | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.train.shape

    @property
    def history(self) -> sp.csr_array:
        """What scoring may read of each user: ``train``, plus ``foldin`` when there is one."""
        if self.foldin is None:
            return self.train
        cached = self.__dict__.get("_history")
        if cached is None:
            cached = sp.csr_array(self.train + self.foldin)
            cached.sum_duplicates()
            cached.sort_indices()
            self.__dict__["_history"] = cached
        return cached

    def scoring_history(self, fold_in: bool) -> sp.csr_array | None:
        """The rows a model scores users from when they are not its own training rows:
        :attr:`history` for a fold-in model on a split with held-out users (their training
        rows are empty); None, the model's training rows, otherwise."""
        return self.history if self.foldin is not None and fold_in else None

    def evaluation_target(
        self, part: Literal["valid", "test"], mask_valid_at_test: bool = True
    ) -> tuple[sp.csr_array, list[sp.csr_array]]:
        """``(truth, exclude)`` of full-ranking evaluation on ``part``: its held-out items, and
        what is masked from the ranking: each user's :attr:`history`, and at test also the
        validation items unless ``mask_valid_at_test`` is off (MMRec's protocol)."""
        if part == "valid":
            return self.valid, [self.history]
        exclude = [self.history, self.valid] if mask_valid_at_test else [self.history]
        return self.test, exclude

    def __repr__(self) -> str:
        fold = f", foldin={self.foldin.nnz}" if self.foldin is not None else ""
        return (
            f"Split(train={self.train.nnz}, valid={self.valid.nnz}, test={self.test.nnz}"
            f"{fold}, shape={self.shape})"
        )

    def save(self, path: Path) -> None:
        """Write the split as an ``.npz`` of the three parts' coordinates (atomic)."""
        path = Path(path)
        arrays = {}
        parts = ("train", "valid", "test") + (("foldin",) if self.foldin is not None else ())
        for part in parts:
            m = getattr(self, part).tocoo()
            arrays[f"{part}_row"] = m.row.astype(np.int32)
            arrays[f"{part}_col"] = m.col.astype(np.int32)
        arrays["shape"] = np.asarray(self.shape, dtype=np.int64)
        # a temporary file of its own, not a fixed name two writers would share
        with atomic_open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> Split:
        try:
            with np.load(path, allow_pickle=False) as z:
                shape = tuple(int(x) for x in z["shape"])
                names = ("train", "valid", "test") + (("foldin",) if "foldin_row" in z else ())
                parts = {part: _csr(z[f"{part}_row"], z[f"{part}_col"], shape) for part in names}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(
                f"{path} cannot be read as a saved split (corrupt, truncated or not written "
                f"by recsys): {exc}"
            ) from None
        return cls(**parts)


def _csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_array:
    m = sp.csr_array(
        (np.ones(len(rows), dtype=np.float32), (rows.astype(np.int64), cols.astype(np.int64))),
        shape=shape,
    )
    m.sum_duplicates()
    m.sort_indices()
    return m


def _parts_from_labels(ds: Dataset, labels: np.ndarray) -> Split:
    users, items = ds.coo()
    shape = (ds.n_users, ds.n_items)
    return Split(*(_csr(users[labels == k], items[labels == k], shape) for k in range(3)))


def _rank_within_user(users: np.ndarray, sort_key: np.ndarray) -> np.ndarray:
    """Position of each interaction within its user's interactions ordered by ``sort_key``."""
    order = np.lexsort((sort_key, users))
    counts = np.bincount(users, minlength=users.max() + 1 if len(users) else 0)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - np.repeat(starts, counts)
    return rank


def ratio_counts(n: np.ndarray, ratios: tuple[float, float, float]) -> np.ndarray:
    """Per-user part sizes with RecBole's arithmetic (``Dataset._calcu_split_ids``).

    Of a user's ``n`` interactions, each non-train part gets ``int(ratio * n)``; then, from
    the last part backwards, a part whose ``ratio * n`` lies in (0, 1) gets one interaction
    taken from train, as long as train keeps more than one. Returns an ``[n_users, 3]`` array.
    """
    n = np.asarray(n, dtype=np.int64)
    cnt = np.stack([(r * n).astype(np.int64) for r in ratios], axis=1)
    cnt[:, 0] = n - cnt[:, 1:].sum(axis=1)
    for part in (2, 1):
        exact = ratios[part] * n
        bump = (cnt[:, 0] > 1) & (exact > 0) & (exact < 1)
        cnt[bump, part] += 1
        cnt[bump, 0] -= 1
    return cnt


def _labels_by_rank(users: np.ndarray, rank: np.ndarray, counts: np.ndarray) -> np.ndarray:
    train_end = counts[:, 0][users]
    valid_end = train_end + counts[:, 1][users]
    labels = np.full(len(users), Dataset.SPLIT_TEST, dtype=np.int8)
    labels[rank < valid_end] = Dataset.SPLIT_VALID
    labels[rank < train_end] = Dataset.SPLIT_TRAIN
    return labels


def split_ratio(
    ds: Dataset, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 2020
) -> Split:
    """Random order per user, then RecBole's ratio arithmetic (``RO``, ``RS``)."""
    ratios = _checked_ratios(ratios)
    users, _ = ds.coo()
    rng = np.random.default_rng(seed)
    rank = _rank_within_user(users, rng.random(len(users)))
    counts = ratio_counts(np.diff(ds.interactions.indptr), ratios)
    return _parts_from_labels(ds, _labels_by_rank(users, rank, counts))


def split_temporal(
    ds: Dataset, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 2020
) -> Split:
    """Timestamp order per user (ties broken at random, seeded), then ratios (``TO``, ``RS``)."""
    if ds.timestamps is None:
        raise DataError(
            f"{ds.name}: the temporal split needs timestamps, and this dataset has none"
        )
    ratios = _checked_ratios(ratios)
    _check_timestamps(ds)
    users, _ = ds.coo()
    rng = np.random.default_rng(seed)
    # add a sub-unit random fraction so equal timestamps are ordered at random
    ts = ds.timestamps
    tie = rng.random(len(users))
    order_key = np.lexsort((tie, ts))
    key = np.empty(len(users), dtype=np.int64)
    key[order_key] = np.arange(len(users))
    rank = _rank_within_user(users, key)
    counts = ratio_counts(np.diff(ds.interactions.indptr), ratios)
    return _parts_from_labels(ds, _labels_by_rank(users, rank, counts))


def split_leave_one_out(ds: Dataset, seed: int = 2020, by_time: bool | None = None) -> Split:
    """Last interaction to test, the one before to validation, per user (``LS``).

    Order is by timestamp when the dataset has timestamps (``by_time`` None or True), else
    random. A user with fewer than 3 interactions keeps them all in training.
    """
    users, _ = ds.coo()
    rng = np.random.default_rng(seed)
    if by_time is None:
        by_time = ds.timestamps is not None
        if not by_time:
            # "the last interaction" means a random one here: say so, it changes the protocol
            log.warning(
                "%s has no timestamps: leave-one-out holds out a random interaction per user, "
                "not the latest",
                ds.name,
            )
    if by_time and ds.timestamps is None:
        raise DataError(f"{ds.name}: a time-ordered leave-one-out split needs timestamps")
    if by_time:
        _check_timestamps(ds)
        order = np.lexsort((rng.random(len(users)), ds.timestamps))
        key = np.empty(len(users), dtype=np.int64)
        key[order] = np.arange(len(users))
    else:
        key = rng.random(len(users))
    rank = _rank_within_user(users, key)
    n = np.diff(ds.interactions.indptr)
    held = (n >= 3).astype(np.int64)
    counts = np.stack([n - 2 * held, held, held], axis=1)
    return _parts_from_labels(ds, _labels_by_rank(users, rank, counts))


def split_given(ds: Dataset, valid_ratio: float = 0.1, seed: int = 2020) -> Split:
    """The dataset's published split; validation carved from train where none is given."""
    if ds.split_labels is None:
        raise DataError(
            f"{ds.name}: split strategy 'given' needs a published split, and this dataset has "
            "none (use 'ratio', 'temporal' or 'loo')"
        )
    if not 0.0 <= valid_ratio < 1.0:
        raise ConfigError(f"split.valid_ratio must be in [0, 1); got {valid_ratio}")
    labels = ds.split_labels.astype(np.int8).copy()
    if not (labels == Dataset.SPLIT_VALID).any() and valid_ratio > 0:
        users, _ = ds.coo()
        in_train = labels == Dataset.SPLIT_TRAIN
        t_users = users[in_train]
        rng = np.random.default_rng(seed)
        rank = _rank_within_user(t_users, rng.random(len(t_users)))
        n_train = np.bincount(t_users, minlength=ds.n_users)
        counts = ratio_counts(n_train, (1.0 - valid_ratio, valid_ratio, 0.0))
        sub = _labels_by_rank(t_users, rank, counts)
        labels[np.flatnonzero(in_train)[sub == Dataset.SPLIT_VALID]] = Dataset.SPLIT_VALID
    return _parts_from_labels(ds, labels)


def _resolve_count(value: float, n: int) -> int:
    return int(value) if value >= 1 else round(value * n)


def split_heldout_users(
    ds: Dataset,
    heldout_users: tuple[float, float] = (0.1, 0.1),
    foldin_ratio: float = 0.8,
    min_heldout_items: int = 5,
    seed: int = 2020,
) -> Split:
    r"""Strong generalisation: held-out validation and test users (Liang et al., WWW 2018).

    Users are shuffled (seeded); the first ``heldout_users[0]`` are validation users, the next
    ``heldout_users[1]`` test users, the rest training users with their whole history in
    ``train``. Held-out interactions with items no training user has are dropped (no model
    trained on the training users can rank them; the paper does the same). Then each held-out
    user with :math:`n_u \ge` ``min_heldout_items`` items gets
    :math:`\lfloor (1 - \text{foldin\_ratio}) \cdot n_u \rfloor` random items as targets and
    keeps the rest as fold-in (the paper's arithmetic); a user with fewer keeps all as fold-in
    (and is not evaluated), and one whose every item was dropped is in no part at all.
    """
    users, items = ds.coo()
    n = np.diff(ds.interactions.indptr)
    present = np.flatnonzero(n > 0)
    n_valid, n_test = (_resolve_count(v, len(present)) for v in heldout_users)
    if n_valid < 1 or n_test < 1 or n_valid + n_test >= len(present):
        raise DataError(
            f"{ds.name}: split.heldout_users={tuple(heldout_users)} gives {n_valid} validation "
            f"and {n_test} test users of {len(present)}; both must be >= 1 and leave training "
            "users"
        )
    rng = np.random.default_rng(seed)
    order = present[rng.permutation(len(present))]
    role = np.zeros(ds.n_users, dtype=np.int8)  # 0 train, 1 validation, 2 test
    role[order[:n_valid]] = 1
    role[order[n_valid : n_valid + n_test]] = 2
    user_role = role[users]
    in_train = user_role == 0
    seen = np.zeros(ds.n_items, dtype=bool)
    seen[items[in_train]] = True
    held = np.flatnonzero(~in_train & seen[items])
    h_users = users[held]
    rank = _rank_within_user(h_users, rng.random(len(held)))
    n_held = np.bincount(h_users, minlength=ds.n_users)
    # the small epsilon keeps e.g. (1 - 0.8) * 5 from flooring to 0
    n_target = np.floor((1.0 - foldin_ratio) * n_held + 1e-9).astype(np.int64)
    n_fold = np.where(n_held >= min_heldout_items, n_held - n_target, n_held)
    target = rank >= n_fold[h_users]
    shape = (ds.n_users, ds.n_items)
    h_role = user_role[held]
    return Split(
        train=_csr(users[in_train], items[in_train], shape),
        valid=_csr(h_users[target & (h_role == 1)], items[held][target & (h_role == 1)], shape),
        test=_csr(h_users[target & (h_role == 2)], items[held][target & (h_role == 2)], shape),
        foldin=_csr(h_users[~target], items[held][~target], shape),
    )


def resolve_split_config(ds: Dataset, cfg: SplitConfig) -> SplitConfig:
    """``cfg`` with its strategy made explicit: ``cfg``'s own, else the published split when
    the data carries one, else the dataset card's default (with the card's ratios unless
    ``cfg`` sets ``ratios``), else ``ratio``. A run records this, so its config says which
    split it used and reproduces it."""
    card = ds.default_split or {}
    update: dict = {}
    if cfg.strategy is None:
        given = ds.split_labels is not None
        update["strategy"] = "given" if given else card.get("strategy") or "ratio"
        if "ratios" not in cfg.model_fields_set and card.get("ratios") is not None:
            update["ratios"] = tuple(card["ratios"])
    return cfg.model_copy(update=update) if update else cfg


def split_dataset(ds: Dataset, cfg: SplitConfig) -> Split:
    """Split ``ds`` as :func:`resolve_split_config` resolves ``cfg``."""
    return make_split(ds, resolve_split_config(ds, cfg))


def make_split(ds: Dataset, cfg: SplitConfig, default: SplitStrategy = "ratio") -> Split:
    """Split ``ds`` as ``cfg`` says, then check that every user keeps a training interaction."""
    strategy = cfg.strategy or default
    if strategy == "ratio":
        split = split_ratio(ds, cfg.ratios, cfg.seed)
    elif strategy == "temporal":
        split = split_temporal(ds, cfg.ratios, cfg.seed)
    elif strategy == "loo":
        split = split_leave_one_out(ds, cfg.seed)
    elif strategy == "given":
        split = split_given(ds, cfg.valid_ratio, cfg.seed)
    elif strategy == "heldout_users":
        split = split_heldout_users(
            ds, cfg.heldout_users, cfg.foldin_ratio, cfg.min_heldout_items, cfg.seed
        )
    else:  # pragma: no cover - the config validates the name
        raise DataError(f"unknown split strategy {strategy!r}")
    if cfg.clean_test_min_rating is not None:
        split = clean_test(ds, split, cfg.clean_test_min_rating)
    check_split(ds, split, strategy=strategy, clean_test=cfg.clean_test_min_rating is not None)
    return split


def clean_test(ds: Dataset, split: Split, min_rating: float) -> Split:
    """``split`` with test interactions rated below ``min_rating`` removed (clean test)."""
    if ds.ratings is None:
        raise DataError(
            f"{ds.name}: split.clean_test_min_rating needs ratings, and this dataset has none"
        )
    users, items = ds.coo()
    clean = ds.ratings >= min_rating
    clean_m = _csr(users[clean], items[clean], (ds.n_users, ds.n_items))
    test = sp.csr_array(split.test.multiply(clean_m))
    test.eliminate_zeros()
    test.sort_indices()
    return replace(split, test=test)


def _empty_test_hint(ds: Dataset, strategy: str | None, clean_test: bool) -> str:
    """What to change when ``strategy`` (None: unknown) leaves the test part empty."""
    labels = ds.split_labels
    if strategy == "given" and labels is not None and not (labels == Dataset.SPLIT_TEST).any():
        where = ds.source or ds.name
        if where.endswith(".inter"):
            return (
                f"{where} has no interaction with x_label 2 (test), so its published split "
                "has no test part; add test rows there, or set split.strategy to 'ratio'"
            )
        return (
            f"{where} gives no test interactions, so its published split has no test part; "
            "add them, or set split.strategy to 'ratio'"
        )
    if strategy is None:
        return "lower split.clean_test_min_rating, or give the test part a share"
    hints = ["lower split.clean_test_min_rating"] if clean_test else []
    if strategy in ("ratio", "temporal"):
        hints.append("give the test part a share (split.ratios)")
    elif strategy == "heldout_users":
        hints.append("hold out test users (split.heldout_users)")
    return ", or ".join(hints) or "filter users with few interactions or choose another split"


def check_split(
    ds: Dataset, split: Split, *, strategy: str | None = None, clean_test: bool = False
) -> None:
    """Raise :class:`DataError` for an empty test or validation part, or naming the first user
    left with no training interaction.

    With a ``foldin`` part (held-out users), fold-in items count as the user's known history.
    ``strategy`` and ``clean_test`` (whether ``split.clean_test_min_rating`` is set), when
    given, choose the hint for an empty test part.
    """
    for part, hint in (
        ("test", _empty_test_hint(ds, strategy, clean_test)),
        ("valid", "give validation a share (split.ratios, split.valid_ratio)"),
    ):
        if getattr(split, part).nnz == 0:
            raise DataError(
                f"{ds.name}: the split leaves the {part} part empty, so there is nothing to "
                f"{'test on' if part == 'test' else 'select epochs on'}; {hint}"
            )
    n_train = np.diff(split.history.indptr)
    n_all = np.diff(ds.interactions.indptr)
    if split.foldin is not None:
        # held-out users lose their interactions with items no training user has; one who
        # loses them all is simply not in the split (not a user without training data)
        n_all = n_train + np.diff(split.valid.indptr) + np.diff(split.test.indptr)
    empty = np.flatnonzero((n_train == 0) & (n_all > 0))
    if len(empty):
        raw = ds.users.raw(empty[:1])[0]
        raise DataError(
            f"{ds.name}: the split leaves user {raw!r} (and {len(empty) - 1} more) with no "
            f"training interactions; filter users with few interactions "
            f"(data.min_user_interactions) or choose another split"
        )
