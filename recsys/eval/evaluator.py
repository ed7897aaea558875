r"""The full-ranking evaluator: every user against every item, in batches, in torch.

For each batch of users the evaluator does one call of the model's score function (typically a
``[B, d] x [d, n_items]`` matmul), one masked ``torch.topk`` at the largest cutoff, and a few
``[B, max K]`` operations from which every metric at every cutoff follows (see
:mod:`recsys.eval.metrics`). It never builds a users-by-items matrix beyond the score block the
model returns, never loops over users or interactions in Python, and does not synchronise with
the device until the end of the evaluation.

The protocol is RecBole 1.2.1's full-sort evaluation: items of the ``exclude`` matrices
(training items; for the test split also validation items, unless ``mask_valid_at_test`` is
off, as in MMRec's protocol) are masked to :math:`-\infty`
before ranking, users without held-out items are skipped, and every metric is the mean over the
users evaluated (:math:`\mathrm{ItemCoverage}` is a property of the union of the lists).

Equal scores are ranked by item index (lower first). RecBole leaves ties to ``torch.topk``
at its largest cutoff, so there a model with many tied scores gets other values at a cutoff
when a larger one is added, and on another device (Pop on MovieLens-100k, test Recall@10:
0.1177 with ``topk=(10,)``, 0.1174 with ``(10, 20)``). Here the list at every cutoff is the
prefix of one total order, and results depend on neither ``batch_size``, ``memory_mb``, the
other cutoffs nor the device. Models with continuous scores have practically no ties.

RecBole differs in two cases, neither met by the built-in splits of MovieLens-100k at
:math:`K \leq 900` (the splits are disjoint, and every user keeps over 900 rankable items). It
masks a user's history *minus* the held-out items, so an item both in training and held out
stays rankable and scores a hit for a model that memorises training; here every ``exclude``
item is masked, is never a hit and still counts in :math:`|G_u|`, because a known item is not
a recommendation. And where a user has fewer than :math:`K` rankable items RecBole fills the
list with masked items (never hits, but counted by item coverage and average popularity); here
those slots are empty.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Literal, overload

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from recsys.errors import ConfigError, DataError, NonFiniteScoresError
from recsys.eval.metrics import (
    METRICS,
    AggregateMetric,
    Metric,
    RankedBatch,
    UserMetric,
    check_cutoff,
    metric_key,
    validate_metric_name,
)

__all__ = ["DEFAULT_METRICS", "Evaluator", "ScoreFn", "tail_items"]

logger = logging.getLogger(__name__)

BYTES_PER_CELL = 12
"""Working-set bytes per user-item cell of a batch: float32 scores, the boolean truth block, and
top-k's temporary copy of the scores (measured peak on CPU, rounded up)."""

ScoreFn = Callable[[Tensor], Tensor]
"""``score_fn(users: LongTensor[B]) -> FloatTensor[B, n_items]``, on any device."""

DEFAULT_METRICS: tuple[str, ...] = (
    "recall",
    "ndcg",
    "mrr",
    "hit",
    "precision",
    "map",
    "item_coverage",
    "average_popularity",
)


def _as_csr(matrix: object, what: str) -> sp.csr_array:
    """``matrix`` as a CSR array (no copy when it already is one)."""
    if isinstance(matrix, sp.csr_array):
        return matrix
    if not sp.issparse(matrix):
        raise DataError(f"{what} must be a scipy.sparse matrix, got {type(matrix).__name__}")
    return sp.csr_array(matrix)


def _row_entries(csr: sp.csr_array, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""The stored entries of ``csr[rows]`` as (position of the row in ``rows``, column).

    Pure index arithmetic on ``indptr``: with :math:`s_b, \ell_b` the start and length of row
    ``rows[b]``, entry :math:`j` of the output lies at ``indices[s_b + j - o_b]`` where
    :math:`o_b = \sum_{c < b} \ell_c`.
    """
    starts = csr.indptr[rows].astype(np.int64)
    lengths = csr.indptr[rows + 1].astype(np.int64) - starts
    offsets = np.cumsum(lengths) - lengths
    total = int(offsets[-1] + lengths[-1]) if len(rows) else 0
    which = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    positions = np.arange(total, dtype=np.int64) + np.repeat(starts - offsets, lengths)
    return which, csr.indices[positions].astype(np.int64, copy=False)


def tail_items(
    item_popularity: np.ndarray, share: float = 0.2, fraction: float | None = None
) -> np.ndarray:
    r"""The tail item slice: ``bool [n_items]``, true for the least popular items.

    Items are sorted by training popularity :math:`c_i` ascending (ties by index). With
    ``fraction`` the tail is the first :math:`\lfloor f\,|\mathcal{I}| \rfloor` of them;
    otherwise the longest prefix whose interactions sum to at most ``share`` of all,
    :math:`\sum_{i \in T} c_i \le s \sum_i c_i` (so items never seen in training are always
    tail). The head is the complement.

    Raises:
        ConfigError: ``share`` or ``fraction`` outside ``[0, 1]``.
    """
    pop = np.asarray(item_popularity, dtype=np.float64).reshape(-1)
    for key, value in (("tail_share", share), ("tail_fraction", fraction)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"eval.{key} must be in [0, 1], got {value!r}")
    order = np.lexsort((np.arange(len(pop)), pop))
    if fraction is not None:
        n_tail = int(np.floor(fraction * len(pop)))
    else:
        cumulative = np.cumsum(pop[order])
        n_tail = int(np.searchsorted(cumulative, share * pop.sum() * (1 + 1e-12), side="right"))
    tail = np.zeros(len(pop), dtype=bool)
    tail[order[:n_tail]] = True
    return tail


class Evaluator:
    """Full-ranking top-K evaluation of a recommender, vectorised in torch.

    Args:
        topk (Sequence[int]): the cutoffs :math:`K` (positive integers; sorted and de-duplicated
            into :attr:`cutoffs`). (default: ``(10, 20)``)
        metrics (Sequence[str]): names registered in :data:`recsys.eval.metrics.METRICS`:
            ``recall``, ``recall_min``, ``ndcg``, ``mrr``, ``hit``, ``precision``, ``map``,
            ``item_coverage``, ``average_popularity``. (default: all but ``recall_min``)
        batch_size (int): users scored per call of ``score_fn``. (default: ``4096``)
        memory_mb (float, optional): a memory budget for one batch's working set (the score
            block, the truth block and top-k's workspace, about :data:`BYTES_PER_CELL` bytes per
            user-item cell); when set, batches shrink to fit it. (default: ``None``)
        device (str or torch.device): where the user-index tensor given to ``score_fn`` is
            created. The scores are processed on the device they come back on, without a copy.
            (default: ``"cpu"``)
        item_slices (bool): also report every per-user metric on the ``head`` and ``tail``
            item slices (see :func:`tail_items`), as ``<metric>_at_<K>_head`` / ``_tail`` and
            ``n_users_head`` / ``_tail``. On a slice :math:`S` only the user's held-out items
            in :math:`S` are relevant, :math:`G^S_u = G_u \\cap S`, the ranking is still over
            all items, and the mean is over users with :math:`G^S_u \\neq \\emptyset`; e.g.
            :math:`\\mathrm{Recall@K}_S(u) = |R_{u,1..K} \\cap G^S_u| / |G^S_u|`
            (``average_popularity`` reads no relevance: on a slice it is the whole list's,
            averaged over the slice's users). Needs the ``item_popularity`` of
            :meth:`evaluate`. (default: ``False``)
        tail_share (float): the tail holds at most this share of training interactions.
            (default: ``0.2``)
        tail_fraction (float, optional): instead, the tail is this fraction of all items, least
            popular first. (default: ``None``)
        mask_valid_at_test (bool): the protocol for the test part of a split, which the
            callers that know the split (the trainer) read: mask the user's validation items
            with the training items (RecBole's full-sort protocol), or leave them rankable, so
            that they take top-K slots as misses (MMRec's, behind the published BM3 and FREEDOM
            numbers). :meth:`evaluate` itself masks exactly the ``exclude`` it is given.
            (default: ``True``)

    Raises:
        ConfigError: an unknown metric name, or a cutoff or batch size that is not a positive
            integer.

    Example::

        ev = Evaluator(topk=(10, 20), metrics=("recall", "ndcg"))
        score = model.scorer()  # model.scorer(split.history) for held-out users (fold-in)
        result = ev.evaluate(score, split.test, exclude=(split.history, split.valid))
        result["ndcg_at_20"], result["n_users"]
        result, table = ev.evaluate(..., per_user=True)  # table["user"], table["ndcg_at_20"]
        items, scores = ev.topk(score, users, k=10, exclude=(split.history,))

    The cutoffs live in :attr:`cutoffs` (the attribute name ``topk`` is the method).
    """

    def __init__(
        self,
        topk: Sequence[int] = (10, 20),
        metrics: Sequence[str] = DEFAULT_METRICS,
        batch_size: int = 4096,
        device: str | torch.device = "cpu",
        memory_mb: float | None = None,
        item_slices: bool = False,
        tail_share: float = 0.2,
        tail_fraction: float | None = None,
        mask_valid_at_test: bool = True,
    ) -> None:
        if isinstance(topk, int | np.integer):
            topk = (int(topk),)
        if len(topk) == 0:
            raise ConfigError("topk must name at least one cutoff")
        self.cutoffs: tuple[int, ...] = tuple(sorted({check_cutoff(k) for k in topk}))
        if isinstance(metrics, str):
            metrics = (metrics,)
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ConfigError(
                f"unknown metric {unknown[0]!r}; valid metrics: {', '.join(sorted(METRICS))}"
            )
        self.metrics: tuple[str, ...] = tuple(dict.fromkeys(metrics))
        self.batch_size = check_cutoff(batch_size, what="batch_size")
        self.device = torch.device(device)
        if memory_mb is not None and not memory_mb > 0:
            raise ConfigError(f"memory_mb must be positive, got {memory_mb!r}")
        self.memory_mb = memory_mb
        tail_items(np.zeros(0), tail_share, tail_fraction)  # checks the two values
        self.item_slices = bool(item_slices)
        self.tail_share = float(tail_share)
        self.tail_fraction = tail_fraction
        # read by the callers that build the exclusions of a split's parts (the trainer)
        self.mask_valid_at_test = bool(mask_valid_at_test)

    def user_batch(self, n_items: int) -> int:
        """Users per batch: ``batch_size``, or fewer where ``memory_mb`` says so."""
        if self.memory_mb is None:
            return self.batch_size
        fits = int(self.memory_mb * 2**20 // (max(n_items, 1) * BYTES_PER_CELL))
        return max(1, min(self.batch_size, fits))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(topk={list(self.cutoffs)}, metrics={list(self.metrics)}, "
            f"batch_size={self.batch_size}, device='{self.device}', memory_mb={self.memory_mb}"
            + (
                f", item_slices=True, tail_share={self.tail_share}, "
                f"tail_fraction={self.tail_fraction})"
                if self.item_slices
                else ")"
            )
        )

    @property
    def max_k(self) -> int:
        """The largest cutoff: the one ``torch.topk`` is taken at."""
        return self.cutoffs[-1]

    @property
    def metric_names(self) -> list[str]:
        """The keys :meth:`evaluate` returns (``average_popularity_*`` only when given an
        ``item_popularity``), without ``n_users``."""
        return [metric_key(m, k) for m in self.metrics for k in self.cutoffs]

    def validate_metric_name(self, name: str) -> None:
        """Check that ``name`` is one of :attr:`metric_names` (e.g. an early-stopping metric).

        Raises:
            ConfigError: naming ``name`` and listing the valid names.
        """
        validate_metric_name(name, topk=self.cutoffs, metrics=self.metrics)

    # ------------------------------------------------------------------ ranking

    def _score_batch(
        self,
        score_fn: ScoreFn,
        users: np.ndarray,
        n_items: int | None,
        exclude: Sequence[sp.csr_array],
    ) -> Tensor:
        r"""Scores ``[B, n_items]`` of ``users`` with the excluded entries set to :math:`-\infty`.

        The mask is one ``index_put_`` on the flat view of the score block at
        ``row * n_items + column`` for the stored entries of the batch's ``exclude`` rows.
        """
        users_t = torch.from_numpy(users).to(self.device)
        scores = score_fn(users_t)
        if not isinstance(scores, Tensor):
            raise TypeError(f"score_fn must return a torch.Tensor, got {type(scores).__name__}")
        if (
            scores.dim() != 2
            or scores.shape[0] != len(users)
            or n_items not in (None, scores.shape[1])
        ):
            expected = f"({len(users)}, {n_items if n_items is not None else 'n_items'})"
            raise ValueError(
                f"score_fn returned scores of shape {tuple(scores.shape)} for {len(users)} "
                f"users; expected {expected}"
            )
        n_items = scores.shape[1]
        if not scores.is_floating_point():
            raise ValueError(f"score_fn must return floating-point scores, got {scores.dtype}")
        # The block is modified in place: never write into a tensor the caller still holds
        # (checked before detach(), which drops the link to the base of a view).
        if scores._base is not None or not scores.is_contiguous():
            scores = scores.detach().clone(memory_format=torch.contiguous_format)
        else:
            scores = scores.detach()
        if exclude:
            flat = []
            for matrix in exclude:
                which, cols = _row_entries(matrix, users)
                flat.append(which * n_items + cols)
            flat_t = torch.from_numpy(np.concatenate(flat)).to(scores.device)
            scores.view(-1)[flat_t] = -math.inf
        return scores

    def _rank(self, scores: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
        r"""The top ``k`` (padded when ``k > n_items``): values, items, valid.

        Items are ranked by score, equal scores by item index (lower first), so the list is
        the same on every device and batch, and its first :math:`K` entries are the top
        :math:`K` for any :math:`K \le k`: a metric at 10 does not depend on whether 20 was
        asked for too. ``torch.topk`` alone leaves the order of ties, and which tied items
        make the cut, to its kernel. A slot is valid iff its score is finite and not
        :math:`-\infty`; NaN slots (ranked first) are invalid too and counted by the callers.
        """
        n_items = scores.shape[1]
        kk = min(k, n_items)
        # one more than asked: if it ties with the last, the cut runs through a group of
        # equal scores, and only a full (stable) sort of that row says which of them make it
        values, items = torch.topk(scores, min(kk + 1, n_items), dim=1)
        if values.shape[1] > kk:
            boundary = values[:, kk - 1]
            cut = (boundary == values[:, kk]) & (boundary > -math.inf)
            values, items = values[:, :kk], items[:, :kk]
            if cut.any():
                rows = cut.nonzero().squeeze(1)
                full = torch.sort(scores[rows], dim=1, descending=True, stable=True)
                values[rows] = full.values[:, :kk]
                items[rows] = full.indices[:, :kk]
        if (values[:, 1:] == values[:, :-1]).any():
            # ties inside the list: by item index, then a stable sort by score keeps that order
            by_item = torch.argsort(items, dim=1)
            values, items = values.gather(1, by_item), items.gather(1, by_item)
            by_score = torch.sort(values, dim=1, descending=True, stable=True).indices
            values, items = values.gather(1, by_score), items.gather(1, by_score)
        if k > n_items:
            pad = k - n_items
            values = torch.nn.functional.pad(values, (0, pad), value=-math.inf)
            items = torch.nn.functional.pad(items, (0, pad), value=0)
        valid = values > -math.inf  # False for -inf and NaN
        return values, items, valid

    # --------------------------------------------------------------- evaluation

    @overload
    def evaluate(
        self,
        score_fn: ScoreFn,
        truth: sp.csr_array,
        exclude: Sequence[sp.csr_array] = (),
        item_popularity: np.ndarray | None = None,
        per_user: Literal[False] = False,
    ) -> dict[str, float]: ...

    @overload
    def evaluate(
        self,
        score_fn: ScoreFn,
        truth: sp.csr_array,
        exclude: Sequence[sp.csr_array] = (),
        item_popularity: np.ndarray | None = None,
        *,
        per_user: Literal[True],
    ) -> tuple[dict[str, float], dict[str, np.ndarray]]: ...

    @torch.inference_mode()
    def evaluate(
        self,
        score_fn: ScoreFn,
        truth: sp.csr_array,
        exclude: Sequence[sp.csr_array] = (),
        item_popularity: np.ndarray | None = None,
        per_user: bool = False,
    ) -> dict[str, float] | tuple[dict[str, float], dict[str, np.ndarray]]:
        r"""Rank all items for every user with held-out items and average the metrics.

        Args:
            score_fn (Callable): ``score_fn(users: LongTensor[B]) -> FloatTensor[B, n_items]``
                on any device. The evaluator masks the returned block in place (a view of
                another tensor is cloned first), so return a fresh tensor, not a cache.
            truth (scipy.sparse matrix): ``n_users x n_items`` held-out items; every stored
                entry is a relevant item (binary relevance; duplicates are merged).
            exclude (Sequence[scipy.sparse matrix]): matrices of the same shape whose stored
                entries are set to :math:`-\infty` before ranking (training items; for the test
                split also validation items). A masked item is never a hit, even if it is also
                in ``truth`` (it still counts in :math:`|G_u|`; RecBole would unmask it, see
                the module notes).
            item_popularity (np.ndarray, optional): ``[n_items]`` training interaction counts,
                needed by ``average_popularity``; without it that metric is left out of the
                result.
            per_user (bool): also return per-user values. (default: ``False``)

        Returns:
            ``{"<metric>_at_<K>": mean over evaluated users, ..., "n_users": count}`` with keys
            in the order metric-major, cutoff-minor. With ``item_slices`` the per-user metrics
            follow once more for each slice, ``<metric>_at_<K>_head`` and ``..._tail``, with
            ``n_users_head`` and ``n_users_tail`` (users with held-out items in the slice).
            With ``per_user=True`` a pair ``(result, per_user)``, where ``per_user["user"]``
            holds the evaluated users' indices (ascending) and ``per_user["<metric>_at_<K>"]``
            their values (float64 arrays, one per per-user metric; ``item_coverage`` has none).
            With no user to evaluate the means are NaN, ``item_coverage`` is 0 and ``n_users``
            is 0.

        Raises:
            DataError: a matrix or popularity vector does not match ``truth``'s shape.
            ValueError: ``score_fn`` returned the wrong shape.
            NonFiniteScoresError: NaN scores (a diverged model; a ``ValueError`` too).
        """
        truth = _as_csr(truth, "truth")
        n_items = truth.shape[1]
        if not truth.has_canonical_format:
            truth = truth.copy()
            truth.sum_duplicates()  # no duplicate entries, so row lengths are |G_u|
        exclude_csr = [_as_csr(m, f"exclude[{i}]") for i, m in enumerate(exclude)]
        for i, m in enumerate(exclude_csr):
            if m.shape != truth.shape:
                raise DataError(f"exclude[{i}] has shape {m.shape}; truth has {truth.shape}")

        names = [m for m in self.metrics if item_popularity is not None or not _needs_pop(m)]
        if len(names) < len(self.metrics):
            logger.debug("no item_popularity given: average_popularity is left out")
        user_metrics: list[tuple[str, UserMetric]] = []
        aggregate_metrics: list[tuple[str, AggregateMetric]] = []
        for name in names:
            metric = METRICS[name]()
            if isinstance(metric, UserMetric):
                user_metrics.append((name, metric))
            elif isinstance(metric, AggregateMetric):
                aggregate_metrics.append((name, metric))
            else:  # pragma: no cover - registry holds only the two kinds
                raise ConfigError(f"metric {name!r} is neither a user nor an aggregate metric")

        n_per_user = np.diff(truth.indptr)
        users_all = np.flatnonzero(n_per_user > 0).astype(np.int64)
        max_k = self.max_k
        n_cut = len(self.cutoffs)

        # Lazily placed on the device the first score block comes back on.
        device: torch.device | None = None
        dtype = torch.float64
        totals: Tensor | None = None
        nan_rows: Tensor | None = None
        states: list[Tensor] = []
        per_user_values: list[Tensor] = []
        cutoffs_t: Tensor | None = None
        popularity_t: Tensor | None = None
        popularity_np = None
        if item_popularity is not None:
            popularity_np = np.asarray(item_popularity, dtype=np.float64).reshape(-1)
            if popularity_np.shape[0] != n_items:
                raise DataError(
                    f"item_popularity has {popularity_np.shape[0]} entries; truth has "
                    f"{n_items} items"
                )

        # item slices: (name, bool [n_items]) and their running sums
        slices: list[tuple[str, np.ndarray]] = []
        if self.item_slices:
            if popularity_np is None:
                raise ConfigError("eval.item_slices needs the training item_popularity")
            tail = tail_items(popularity_np, self.tail_share, self.tail_fraction)
            slices = [("head", ~tail), ("tail", tail)]
        slice_totals: list[Tensor] = []
        slice_users = np.zeros(len(slices), dtype=np.int64)
        slice_masks: list[Tensor] = []

        step = self.user_batch(truth.shape[1])
        for start in range(0, len(users_all), step):
            users = users_all[start : start + step]
            scores = self._score_batch(score_fn, users, n_items, exclude_csr)
            if device is None:
                device = scores.device
                dtype = torch.float32 if device.type == "mps" else torch.float64
                totals = torch.zeros(len(user_metrics), n_cut, dtype=dtype, device=device)
                nan_rows = torch.zeros((), dtype=torch.long, device=device)
                states = [m.init_state(n_items, max_k, device) for _, m in aggregate_metrics]
                cutoffs_t = torch.tensor(self.cutoffs, dtype=torch.long, device=device)
                if popularity_np is not None:
                    popularity_t = torch.from_numpy(popularity_np).to(device, dtype)
                slice_masks = [torch.from_numpy(m).to(device) for _, m in slices]
                slice_totals = [torch.zeros_like(totals) for _ in slices]
            assert totals is not None and nan_rows is not None and cutoffs_t is not None

            values, items, valid = self._rank(scores, max_k)
            nan_rows += torch.isnan(values).any(dim=1).sum()

            # Hits: a boolean truth block of the batch (a quarter of the score block's bytes),
            # set at the flat keys row * n_items + item, then gathered at the top-K items.
            which, cols = _row_entries(truth, users)
            keys = torch.from_numpy(which * n_items + cols).to(device)
            in_truth = torch.zeros(len(users), n_items, dtype=torch.bool, device=device)
            in_truth.view(-1)[keys] = True
            hits = in_truth.gather(1, items) & valid
            del in_truth

            n_truth = torch.from_numpy(n_per_user[users]).to(device)
            batch = RankedBatch(
                hits=hits,
                valid=valid,
                items=items,
                n_truth=n_truth,
                cutoffs=cutoffs_t,
                item_popularity=popularity_t,
                dtype=dtype,
            )
            if user_metrics:
                block = torch.stack([m(batch) for _, m in user_metrics], dim=1)  # [B, M, C]
                totals += block.sum(dim=0)
                if per_user:
                    per_user_values.append(block)
            for (_, metric), state in zip(aggregate_metrics, states, strict=True):
                metric.update(state, batch)
            for s, (_, member) in enumerate(slices):
                # only the slice's held-out items are relevant; users with none are skipped
                n_slice = np.bincount(which, weights=member[cols], minlength=len(users))
                rows = torch.from_numpy(np.flatnonzero(n_slice > 0)).to(device)
                slice_users[s] += len(rows)
                if not user_metrics or len(rows) == 0:
                    continue
                sliced = RankedBatch(
                    hits=(hits & slice_masks[s][items]).index_select(0, rows),
                    valid=valid.index_select(0, rows),
                    items=items.index_select(0, rows),
                    n_truth=torch.from_numpy(n_slice.astype(np.int64)).to(device)[rows],
                    cutoffs=cutoffs_t,
                    item_popularity=popularity_t,
                    dtype=dtype,
                )
                slice_totals[s] += torch.stack([m(sliced) for _, m in user_metrics], 1).sum(0)

        n_eval = len(users_all)
        user_index = {name: i for i, (name, _) in enumerate(user_metrics)}
        means = np.full((len(user_metrics), n_cut), math.nan)
        aggregates = np.zeros((len(aggregate_metrics), n_cut))
        if n_eval == 0:
            logger.warning("no user has held-out items: nothing to evaluate")
        else:
            assert totals is not None and nan_rows is not None and cutoffs_t is not None
            n_nan = int(nan_rows.item())
            if n_nan:
                raise NonFiniteScoresError(
                    f"score_fn returned NaN scores for {n_nan} of {n_eval} users; "
                    "the model has probably diverged"
                )
            means = (totals / n_eval).cpu().numpy()
            for i, ((_, metric), state) in enumerate(zip(aggregate_metrics, states, strict=True)):
                aggregates[i] = metric.result(state, cutoffs_t, n_items).cpu().numpy()

        agg_index = {name: i for i, (name, _) in enumerate(aggregate_metrics)}
        result: dict[str, float] = {}
        for name in names:
            row = means[user_index[name]] if name in user_index else aggregates[agg_index[name]]
            for j, k in enumerate(self.cutoffs):
                result[metric_key(name, k)] = float(row[j])
        result["n_users"] = n_eval
        for s, (label, _) in enumerate(slices):
            count = int(slice_users[s])
            for name, i in user_index.items():
                for j, k in enumerate(self.cutoffs):
                    value = float(slice_totals[s][i, j] / count) if count else math.nan
                    result[f"{metric_key(name, k)}_{label}"] = value
            result[f"n_users_{label}"] = count
        if not per_user:
            return result

        values_all = (
            torch.cat(per_user_values, dim=0).double().cpu().numpy()
            if per_user_values
            else np.zeros((0, len(user_metrics), n_cut))
        )
        table: dict[str, np.ndarray] = {"user": users_all}
        for name, i in user_index.items():
            for j, k in enumerate(self.cutoffs):
                table[metric_key(name, k)] = values_all[:, i, j]
        return result, table

    # ----------------------------------------------------------- recommendation

    @torch.inference_mode()
    def topk(
        self,
        score_fn: ScoreFn,
        users: np.ndarray,
        k: int,
        exclude: Sequence[sp.csr_array] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""The top-``k`` items of ``users`` after masking, for recommendation output.

        Args:
            score_fn (Callable): as in :meth:`evaluate`.
            users (np.ndarray): user indices, any order, repeats allowed.
            k (int): list length.
            exclude (Sequence[scipy.sparse matrix]): ``n_users x n_items`` matrices whose stored
                entries are never recommended.

        Returns:
            ``(items, scores)``: ``int64 [len(users), k]`` item indices in rank order and their
            scores (``float32``, or ``float64`` if the model scores in double). Slots beyond the
            user's rankable items (masked, or scored :math:`-\infty` by the model) hold item
            ``-1`` and score ``-inf``. Equal scores are ranked by item index.

        Raises:
            ConfigError: ``k`` is not a positive integer.
            DataError: a user index is out of range for ``exclude``.
            ValueError: ``score_fn`` returned the wrong shape.
            NonFiniteScoresError: NaN scores (a ``ValueError`` too).
        """
        k = check_cutoff(k, what="top-k")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        exclude_csr = [_as_csr(m, f"exclude[{i}]") for i, m in enumerate(exclude)]
        for i, m in enumerate(exclude_csr):
            if len(users) and (users.min() < 0 or users.max() >= m.shape[0]):
                raise DataError(f"user index out of range for exclude[{i}] with {m.shape[0]} users")
        n_items = exclude_csr[0].shape[1] if exclude_csr else None
        for i, m in enumerate(exclude_csr):
            if m.shape[1] != n_items:
                raise DataError(f"exclude[{i}] has {m.shape[1]} items; exclude[0] has {n_items}")
        out_items: list[Tensor] = []
        out_scores: list[Tensor] = []
        # without exclude matrices the catalogue size is known only from the first scores, so
        # under a memory budget the first batch is one user
        if n_items is not None:
            step = self.user_batch(n_items)
        else:
            step = self.batch_size if self.memory_mb is None else 1
        start = 0
        while start < len(users):
            batch = users[start : start + step]
            start += len(batch)
            scores = self._score_batch(score_fn, batch, n_items, exclude_csr)
            if n_items is None:
                n_items = scores.shape[1]
                step = self.user_batch(n_items)
            values, items, valid = self._rank(scores, k)
            if torch.isnan(values).any():
                raise NonFiniteScoresError(
                    "score_fn returned NaN scores; the model has probably diverged"
                )
            out_items.append(torch.where(valid, items, -1))
            out_scores.append(values)
        if not out_items:
            return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
        items_np = torch.cat(out_items).cpu().numpy().astype(np.int64, copy=False)
        scores_t = torch.cat(out_scores)
        if scores_t.dtype != torch.float64:
            scores_t = scores_t.float()
        return items_np, scores_t.cpu().numpy()


def _needs_pop(name: str) -> bool:
    metric: type[Metric] = METRICS[name]
    return metric.needs_popularity
