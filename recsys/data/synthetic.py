"""Synthetic interaction data with planted structure, of any size.

:func:`make_synthetic` draws user and item factors, a power-law (Zipf-like) item popularity,
and then lets every user pick distinct items with probability proportional to

.. math::

    p(i \\mid u) \\propto \\mathrm{pop}_i^{a} \\, \\exp(\\langle x_u, y_i \\rangle / \\tau)

where :math:`\\mathrm{pop}_i = 1 / \\mathrm{rank}_i` (a random rank per item), :math:`a` is
``popularity_exponent`` and :math:`\\tau` is ``temperature``. Items also get dense modality
features (``text``, ``image``, ...) made from their factors through a random projection plus
noise, and a multi-hot ``genre`` naming the factors on which they are extreme, so multimodal
models and probes have something real to find.

Sampling is vectorised in blocks of users. Each user draws a candidate pool from the
popularity distribution (inverse CDF) and keeps the top items of
``affinity / temperature + log(multiplicity) + Gumbel noise``: a sampling-importance-resampling
version of Gumbel top-k without replacement that needs memory proportional to the number of
interactions, not users times items. Users whose pool would cover most of the catalogue are
sampled exactly over all items.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from recsys.data.dataset import Dataset, FeatureTable, Vocabulary
from recsys.errors import ConfigError

__all__ = [
    "MAX_SIZE",
    "SYNTHETIC_DEFAULT",
    "make_synthetic",
    "parse_synthetic_name",
    "planted_factors",
]

SYNTHETIC_DEFAULT = (1000, 500, 20000)
"""(users, items, interactions) of the dataset named plain ``synthetic``."""

MAX_SIZE = 2**31 - 1
"""The most users, items or interactions a synthetic dataset may have (item indices are
32-bit in the interaction matrix)."""

# peak bytes of make_synthetic per user, per item (plus 12 per modality column) and per
# interaction, measured (ru_maxrss) with a margin of about 25%
_BYTES_PER_USER = 400
_BYTES_PER_ITEM = 400
_BYTES_PER_MODALITY_VALUE = 12
_BYTES_PER_INTERACTION = 128

_NAME = re.compile(r"synthetic(?:-([0-9]+)x([0-9]+)x([0-9]+))?")
_POOL_FACTOR = 3
_POOL_MIN = 32
_BLOCK = 1 << 21  # candidate pairs scored per block


def parse_synthetic_name(name: str) -> tuple[int, int, int] | None:
    """``(users, items, interactions)`` for ``synthetic`` or ``synthetic-UxIxN``, else None.

    The sizes are ASCII digits and the whole name must match (no surrounding whitespace or
    newline), so that one dataset has one name (it also names run folders).

    Raises:
        ConfigError: a size is written with leading zeros (``synthetic-010x10x50``); the
            message gives the one spelling of that dataset.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    if match.group(1) is None:
        return SYNTHETIC_DEFAULT
    sizes = int(match.group(1)), int(match.group(2)), int(match.group(3))
    canonical = "synthetic-{}x{}x{}".format(*sizes)
    if name != canonical:
        raise ConfigError(
            f"dataset name {name!r}: write the sizes without leading zeros, {canonical!r}, "
            f"so that one dataset has one name"
        )
    return sizes


def planted_factors(
    n_users: int,
    n_items: int,
    *,
    n_factors: int = 8,
    popularity_exponent: float = 1.0,
    seed: int = 0,
    user_concepts: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The planted truth behind :func:`make_synthetic` with the same arguments and seed.

    With ``user_concepts`` each user's factor vector is non-zero on only that many factors
    (see :func:`make_synthetic`); the sparse vectors come from a second generator, so the item
    factors and popularity are the same as without the option.

    Returns:
        tuple: user factors ``(n_users, n_factors)``, item factors ``(n_items, n_factors)``
        (entries scaled so an affinity has unit variance) and the log popularity weight
        ``a * log(pop)`` of every item ``(n_items,)``.
    """
    rng = np.random.default_rng(seed)
    scale = float(n_factors) ** -0.25
    users = (rng.standard_normal((n_users, n_factors)) * scale).astype(np.float32)
    items = (rng.standard_normal((n_items, n_factors)) * scale).astype(np.float32)
    rank = rng.permutation(n_items)
    log_pop = -float(popularity_exponent) * np.log1p(rank).astype(np.float64)
    if user_concepts is not None:
        users = _concept_users(n_users, n_factors, int(user_concepts), seed)
    return users, items, log_pop


def _concept_users(n_users: int, n_factors: int, n_active: int, seed: int) -> np.ndarray:
    """User factors that are non-zero on ``n_active`` random factors per user.

    An active entry is :math:`\\pm(|g| + 1/2)` with :math:`g` standard normal and a random
    sign, scaled so that an affinity still has unit variance.
    """
    if not 1 <= n_active <= n_factors:
        raise ConfigError(
            f"synthetic: user_concepts must be between 1 and n_factors={n_factors}, got {n_active}"
        )
    rng = np.random.default_rng((seed, 1))
    chosen = np.argsort(rng.random((n_users, n_factors)), axis=1)[:, :n_active]
    mask = np.zeros((n_users, n_factors), dtype=bool)
    np.put_along_axis(mask, chosen, True, axis=1)
    g = rng.standard_normal((n_users, n_factors))
    # E[(|g| + 1/2)^2] = 5/4 + sqrt(2/pi); the sqrt(n / n_active) keeps Var(affinity) = 1
    second_moment = 1.25 + math.sqrt(2.0 / math.pi)
    scale = float(n_factors) ** -0.25 * math.sqrt(n_factors / n_active / second_moment)
    values = np.sign(g) * (np.abs(g) + 0.5) * scale
    return np.where(mask, values, 0.0).astype(np.float32)


def make_synthetic(
    n_users: int = SYNTHETIC_DEFAULT[0],
    n_items: int = SYNTHETIC_DEFAULT[1],
    n_interactions: int = SYNTHETIC_DEFAULT[2],
    *,
    n_factors: int = 8,
    popularity_exponent: float = 1.0,
    temperature: float = 0.5,
    modalities: Mapping[str, int] | None = None,
    modality_noise: float = 0.1,
    genres: bool = True,
    label_noise: float = 0.0,
    timestamps: bool = True,
    min_per_user: int = 5,
    seed: int = 0,
    name: str | None = None,
    user_concepts: int | None = None,
) -> Dataset:
    """Make a dataset with planted latent factors and power-law popularity.

    Args:
        n_users: number of users (every one gets interactions).
        n_items: number of items (items that nobody picks stay in the vocabulary).
        n_interactions: exact number of distinct (user, item) interactions.
        n_factors: dimension of the planted factors.
        popularity_exponent: exponent ``a`` of the Zipf-like popularity ``(1/rank)^a``;
            0 makes popularity uniform.
        temperature: divides the user-item affinity; lower means choices follow the factors
            more closely.
        modalities: name -> width of dense item features made as ``factors @ projection``
            (standardised) plus ``modality_noise`` times standard normal noise. ``None`` gives
            ``{"text": 64, "image": 32}``; ``{}`` gives none.
        modality_noise: noise level of the modality features relative to their signal.
        genres: add a multi-hot item feature ``genre`` with tokens ``f{k}+`` / ``f{k}-`` for
            items whose factor ``k`` is more than one standard deviation above / below the mean.
        label_noise: fraction of interactions whose item is replaced by a uniformly random item
            the user did not pick.
        timestamps: add timestamps, strictly increasing within each user in a random order.
        min_per_user: the least number of interactions of any user (capped at ``n_items``).
        seed: seed of every random draw.
        name: dataset name; defaults to ``synthetic-{users}x{items}x{interactions}``.
        user_concepts: planted concepts. When set, each user's taste follows only this many of
            the factors (chosen at random, each with a random sign), so a user is drawn to a
            few item groups, the ``genre`` tokens ``f{k}+`` / ``f{k}-``, and indifferent to the
            rest. None (the default) gives every user a dense Gaussian factor vector.

    Returns:
        Dataset: ``ratings`` holds the noise flags: 1.0 for an interaction drawn from the
        model, 0.0 for one replaced by label noise. Raw ids are ``"0"..."n-1"``.

    Raises:
        ConfigError: before anything is allocated, for sizes that are not positive, more
            interactions than users x items, too few for ``min_per_user`` each, a size above
            :data:`MAX_SIZE`, or an estimated peak memory (about 400 bytes per user and per
            item, 12 per modality value and 128 per interaction) above this machine's
            physical memory.
    """
    if modalities is None:
        modalities = {"text": 64, "image": 32}
    label = name or f"synthetic-{n_users}x{n_items}x{n_interactions}"
    _check_args(n_users, n_items, n_interactions, n_factors, temperature, label_noise)
    _check_size(label, n_users, n_items, n_interactions, min_per_user, modalities)
    rng = np.random.default_rng(seed)
    user_f, item_f, log_pop = planted_factors(
        n_users,
        n_items,
        n_factors=n_factors,
        popularity_exponent=popularity_exponent,
        seed=seed,
        user_concepts=user_concepts,
    )
    counts = _user_counts(rng, n_users, n_items, n_interactions, min_per_user)
    users, items = _sample(rng, user_f, item_f, log_pop, counts, temperature)
    clean = np.ones(len(users), dtype=bool)
    if label_noise > 0:
        items, clean = _add_label_noise(rng, users, items, n_items, label_noise)
    times = _timestamps(rng, users, n_users) if timestamps else None

    features: dict[str, FeatureTable] = {}
    for key, width in modalities.items():
        if int(width) <= 0:
            raise ConfigError(f"modalities[{key!r}] must be a positive width, got {width}")
        projection = rng.standard_normal((n_factors, int(width))).astype(np.float32)
        signal = item_f @ projection
        signal /= max(float(signal.std()), 1e-12)
        noise = rng.standard_normal(signal.shape).astype(np.float32)
        features[key] = FeatureTable(
            key, "dense", (signal + modality_noise * noise).astype(np.float32)
        )
    if genres:
        features["genre"] = _genre_table(item_f)

    ids_u = Vocabulary(np.arange(n_users).astype(str), "user")
    ids_i = Vocabulary(np.arange(n_items).astype(str), "item")
    return Dataset.from_arrays(
        name or f"synthetic-{n_users}x{n_items}x{n_interactions}",
        ids_u,
        ids_i,
        users,
        items,
        ratings=clean.astype(np.float32),
        timestamps=times,
        item_features=features,
        source=f"make_synthetic(seed={seed})",
    )


def _check_args(
    n_users: int,
    n_items: int,
    n_interactions: int,
    n_factors: int,
    temperature: float,
    label_noise: float,
) -> None:
    if n_users <= 0 or n_items <= 0 or n_interactions <= 0:
        raise ConfigError(
            f"synthetic sizes must be positive, got users={n_users}, items={n_items}, "
            f"interactions={n_interactions}"
        )
    if n_interactions > n_users * n_items:
        raise ConfigError(
            f"synthetic: {n_interactions} interactions do not fit in {n_users} users x "
            f"{n_items} items"
        )
    if n_factors <= 0:
        raise ConfigError(f"synthetic: n_factors must be positive, got {n_factors}")
    if temperature <= 0:
        raise ConfigError(f"synthetic: temperature must be positive, got {temperature}")
    if not 0.0 <= label_noise < 1.0:
        raise ConfigError(f"synthetic: label_noise must be in [0, 1), got {label_noise}")


def _physical_memory() -> int | None:
    """Bytes of physical memory of this machine; None where the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def _check_size(
    label: str,
    n_users: int,
    n_items: int,
    n_interactions: int,
    min_per_user: int,
    modalities: Mapping[str, int],
) -> None:
    """Refuse, before any allocation, sizes the generator cannot or should not try."""
    floor = _user_floor(min_per_user, n_items)
    if n_interactions < n_users * floor:
        raise ConfigError(
            f"synthetic: {n_interactions} interactions cannot give {n_users} users at least "
            f"{floor} each (min_per_user); ask for at least {n_users * floor}"
        )
    sizes = {"users": n_users, "items": n_items, "interactions": n_interactions}
    over = [f"{value} {key}" for key, value in sizes.items() if value > MAX_SIZE]
    if over:
        raise ConfigError(
            f"synthetic dataset {label!r}: {', '.join(over)} is more than the limit of "
            f"{MAX_SIZE} (2**31 - 1) of each size"
        )
    width = sum(max(int(w), 0) for w in modalities.values())
    need = (
        _BYTES_PER_USER * n_users
        + (_BYTES_PER_ITEM + _BYTES_PER_MODALITY_VALUE * width) * n_items
        + _BYTES_PER_INTERACTION * n_interactions
    )
    total = _physical_memory()
    if total is not None and need > total:
        raise ConfigError(
            f"synthetic dataset {label!r} would need about {need / 2**30:.1f} GiB of memory, "
            f"more than this machine's {total / 2**30:.1f} GiB (the limit); ask for fewer "
            f"users, items or interactions"
        )


def _user_floor(min_per_user: int, n_items: int) -> int:
    return min(max(int(min_per_user), 1), n_items)


def _user_counts(
    rng: np.random.Generator, n_users: int, n_items: int, n_interactions: int, min_per_user: int
) -> np.ndarray:
    """Interactions per user: a floor plus a log-normal activity share, capped at n_items."""
    floor = _user_floor(min_per_user, n_items)
    activity = rng.lognormal(0.0, 1.0, n_users)
    counts = np.full(n_users, floor, dtype=np.int64)
    counts += rng.multinomial(n_interactions - n_users * floor, activity / activity.sum())
    while True:
        excess = int(np.maximum(counts - n_items, 0).sum())
        if excess == 0:
            return counts
        counts = np.minimum(counts, n_items)
        room = (n_items - counts).astype(np.float64)
        counts += rng.multinomial(excess, room / room.sum())


def _sample(
    rng: np.random.Generator,
    user_f: np.ndarray,
    item_f: np.ndarray,
    log_pop: np.ndarray,
    counts: np.ndarray,
    temperature: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items for every user, ``counts[u]`` of them, in blocks of similar users.

    Users are processed in order of their count so a block's padded matrices waste little.
    A user whose pool held fewer distinct items than it needs is retried with a pool four
    times larger (and eventually exactly, over all items).
    """
    n_items = len(item_f)
    cdf = np.cumsum(np.exp(log_pop - log_pop.max()))
    cdf /= cdf[-1]
    pool = _POOL_FACTOR * counts + _POOL_MIN
    out_users: list[np.ndarray] = []
    out_items: list[np.ndarray] = []
    pending = np.argsort(counts, kind="stable")
    while len(pending):
        cost = np.where(pool[pending] * 2 >= n_items, n_items, pool[pending])
        retry: list[np.ndarray] = []
        start = 0
        while start < len(pending):
            width = np.maximum.accumulate(cost[start:])
            size = np.arange(1, len(width) + 1) * width
            stop = start + max(1, int(np.searchsorted(size, _BLOCK, side="right")))
            block = pending[start:stop]
            args = (rng, block, counts[block], user_f, item_f, temperature)
            if int(width[stop - start - 1]) >= n_items:
                got_u, got_i, short = _sample_exact(*args, log_pop)
            else:
                got_u, got_i, short = _sample_pooled(*args, int(pool[block].max()), cdf)
            out_users.append(got_u)
            out_items.append(got_i)
            retry.append(short)
            start = stop
        pending = np.concatenate(retry)
        pool[pending] *= 4
    users = np.concatenate(out_users)
    items = np.concatenate(out_items)
    order = np.argsort(users, kind="stable")
    return users[order], items[order]


def _top_per_row(
    block: np.ndarray, score: np.ndarray, items: np.ndarray, want: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ``want[r]`` highest-scoring entries of every row of ``score`` (-inf = empty)."""
    k_max = int(want.max())
    if k_max < score.shape[1]:
        part = np.argpartition(-score, k_max - 1, axis=1)[:, :k_max]
    else:
        part = np.broadcast_to(np.arange(score.shape[1]), score.shape)
    top_score = np.take_along_axis(score, part, axis=1)
    order = np.argsort(-top_score, axis=1, kind="stable")
    cols = np.take_along_axis(part, order, axis=1)
    keep = np.arange(cols.shape[1])[None, :] < want[:, None]
    rows = np.broadcast_to(np.arange(len(block))[:, None], cols.shape)
    chosen_items = np.take_along_axis(items, cols, axis=1) if items.ndim == 2 else cols
    return block[rows[keep]], chosen_items[keep]


def _sample_exact(
    rng: np.random.Generator,
    block: np.ndarray,
    want: np.ndarray,
    user_f: np.ndarray,
    item_f: np.ndarray,
    temperature: float,
    log_pop: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gumbel top-k over every item: exact sampling without replacement."""
    logits = (user_f[block] @ item_f.T).astype(np.float64) / temperature + log_pop
    logits += rng.gumbel(size=logits.shape)
    users, items = _top_per_row(block, logits, np.zeros((0,), dtype=np.int64), want)
    return users, items, np.zeros(0, dtype=np.int64)


def _sample_pooled(
    rng: np.random.Generator,
    block: np.ndarray,
    want: np.ndarray,
    user_f: np.ndarray,
    item_f: np.ndarray,
    temperature: float,
    pool: int,
    cdf: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates from the popularity distribution, then Gumbel top-k by affinity.

    Returns the sampled (users, items) and the users whose pool had too few distinct items.
    """
    n_rows, n_items = len(block), len(item_f)
    uniform = rng.random((n_rows, pool))
    uniform.sort(axis=1)  # sorted queries make the inverse-CDF lookup cache friendly
    cand = np.minimum(np.searchsorted(cdf, uniform.ravel()), n_items - 1)
    flat = cand + np.repeat(np.arange(n_rows, dtype=np.int64) * n_items, pool)
    new = np.ones(len(flat), dtype=bool)
    new[1:] = flat[1:] != flat[:-1]
    starts = np.flatnonzero(new)
    mult = np.diff(np.append(starts, len(flat)))
    key = flat[starts]
    rows, items = key // n_items, key % n_items
    affinity = np.einsum("ij,ij->i", user_f[block[rows]], item_f[items], dtype=np.float64)
    score = affinity / temperature + np.log(mult) + rng.gumbel(size=len(rows))
    distinct = np.bincount(rows, minlength=n_rows)
    first = np.concatenate([[0], np.cumsum(distinct)[:-1]])
    col = np.arange(len(rows)) - first[rows]
    width = int(distinct.max())
    score_m = np.full((n_rows, width), -np.inf)
    score_m[rows, col] = score
    item_m = np.zeros((n_rows, width), dtype=np.int64)
    item_m[rows, col] = items
    short = distinct < want
    users, chosen = _top_per_row(block[~short], score_m[~short], item_m[~short], want[~short])
    return users, chosen, block[short]


def _add_label_noise(
    rng: np.random.Generator,
    users: np.ndarray,
    items: np.ndarray,
    n_items: int,
    fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Replace a ``fraction`` of items by random items the user did not pick."""
    n = len(users)
    n_noisy = round(fraction * n)
    original = users * n_items + items
    taken = np.sort(original)
    noisy = np.sort(rng.choice(n, size=n_noisy, replace=False))
    new_items = rng.integers(0, n_items, size=n_noisy)
    todo = np.ones(n_noisy, dtype=bool)
    for _ in range(32):
        key = users[noisy] * n_items + new_items
        clash = _isin_sorted(key, taken)
        _, first = np.unique(key, return_index=True)
        repeat = np.ones(n_noisy, dtype=bool)
        repeat[first] = False
        todo = clash | repeat
        if not todo.any():
            break
        new_items[todo] = rng.integers(0, n_items, size=int(todo.sum()))
    keep_noisy = noisy[~todo]
    out = items.copy()
    out[keep_noisy] = new_items[~todo]
    clean = np.ones(n, dtype=bool)
    clean[keep_noisy] = False
    return out, clean


def _isin_sorted(values: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_ref, values)
    pos = np.minimum(pos, len(sorted_ref) - 1)
    return sorted_ref[pos] == values


def _timestamps(rng: np.random.Generator, users: np.ndarray, n_users: int) -> np.ndarray:
    """Integer-valued seconds, strictly increasing within each user in a random order."""
    n = len(users)
    order = np.argsort(users + 0.5 * rng.random(n))  # users in order, random within a user
    gaps = 1.0 + np.floor(rng.exponential(86400.0, n))
    cum = np.cumsum(gaps)
    sorted_users = users[order]
    first = np.searchsorted(sorted_users, np.arange(n_users))
    offset = np.concatenate([[0.0], cum])[first]
    start = 1.5e9 + np.floor(rng.uniform(0.0, 3.0e7, n_users))
    local = cum - offset[sorted_users]
    out = np.empty(n, dtype=np.float64)
    out[order] = start[sorted_users] + local
    return out


def _genre_table(item_f: np.ndarray) -> FeatureTable:
    """Multi-hot ``f{k}+`` / ``f{k}-`` tokens for items extreme on factor ``k``."""
    z = (item_f - item_f.mean(axis=0)) / np.maximum(item_f.std(axis=0), 1e-12)
    n_factors = item_f.shape[1]
    flags = np.empty((len(item_f), 2 * n_factors), dtype=np.float32)
    flags[:, 0::2] = z > 1.0
    flags[:, 1::2] = z < -1.0
    vocab = [f"f{k}{sign}" for k in range(n_factors) for sign in "+-"]
    return FeatureTable("genre", "multi_hot", sp.csr_array(flags), vocab)
