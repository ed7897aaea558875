r"""Feature masks for self-supervised item-tower training (Yao et al., CIKM 2021).

Two complementary views of an item mask disjoint parts of its feature set
:math:`F = \{f_1, \dots, f_k\}`: view one replaces the features in :math:`F_m` by their default
embeddings, view two those in :math:`F \setminus F_m`.

- **RFM** (random feature masking): :math:`F_m` is a random subset.
- **CFM** (correlated feature masking): a seed feature :math:`f_s` drawn uniformly, and the
  :math:`n = \lfloor k/2 \rfloor` features with the largest mutual information with it,

  .. math::
      F_m = \{f_s\} \cup \operatorname{top}_n\{\mathrm{MI}(f_s, f_j) : j \neq s\},\qquad
      \mathrm{MI}(V_i, V_j) = \sum_{v_i, v_j} P(v_i, v_j)
        \log\frac{P(v_i, v_j)}{P(v_i)P(v_j)},

  so correlated features are masked together rather than one leaking the other's information
  into the other view. :math:`n` is capped at :math:`k - 2` so that each view keeps at least
  one feature.

  The paper gives :math:`n = \lfloor k/2 \rfloor` "so that the masked and retained set of
  features have roughly the same size"; with few features the formula and the aim part ways
  (:math:`k = 4`: three masked, one retained). ``rule="half"`` follows the aim:
  :math:`|F_m| = \lfloor k/2 \rfloor`, the seed and its :math:`\lfloor k/2 \rfloor - 1`
  nearest neighbours (two and two for :math:`k = 4`). RFM masks a random set of the same size.

Mutual information is computed once over the item feature *columns* (one row per item, as the
SSL task samples items uniformly from the corpus), from one discrete code per item and feature:
the code itself for categorical features (the item id is a feature with one value per item), the
set of values of a multi-valued feature (hashed), and a k-means cluster for a dense feature
(quantile bins for a one-column one).

The neighbours are ranked by *chance-adjusted* mutual information
(:func:`adjusted_mutual_information`): the plug-in estimate minus its mean over random
permutations of one column (its value under independence). The plug-in estimate grows with the
number of distinct codes whatever the association: the item id, whose codes are all distinct,
has :math:`\mathrm{MI}(f, \mathrm{id}) = H(f) \geq \mathrm{MI}(f, g)` for every :math:`g`
and would join every masked set, and a hashed multi-valued feature with a code per item nearly
so, crowding out the features that are in fact correlated. Adjusted, both score about 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

__all__ = [
    "adjusted_mutual_information",
    "cfm_groups",
    "dense_codes",
    "masked_set_size",
    "multi_hot_codes",
    "mutual_information",
]


MaskRule = Literal["seed_plus_half", "half"]


def masked_set_size(k: int, rule: MaskRule = "seed_plus_half") -> int:
    r""":math:`|F_m|` for :math:`k \geq 2` features: :math:`1 + \min(\lfloor k/2 \rfloor,
    k - 2)` (``"seed_plus_half"``, the paper's formula) or :math:`\lfloor k/2 \rfloor`
    (``"half"``, its stated aim of views of about equal size)."""
    if k < 2:
        raise ValueError(f"feature masking needs at least two features, got {k}")
    if rule == "half":
        return k // 2
    if rule != "seed_plus_half":
        raise ValueError(f"unknown mask rule {rule!r}; use 'seed_plus_half' or 'half'")
    return 1 + min(k // 2, k - 2)


def mutual_information(codes: np.ndarray) -> np.ndarray:
    r"""Pairwise mutual information (nats) of the discrete columns of ``codes``.

    Args:
        codes: ``int [n, k]``, one non-negative code per row and feature.

    Returns:
        ``float64 [k, k]`` symmetric matrix; the diagonal holds each feature's entropy.
    """
    return np.maximum(_mi_matrix(codes), 0.0)


def adjusted_mutual_information(
    codes: np.ndarray, n_permutations: int = 8, seed: int = 0, max_rows: int = 200_000
) -> np.ndarray:
    r"""Chance-adjusted pairwise mutual information (nats) of the columns of ``codes``:

    .. math::
        \mathrm{MI}^*(V_i, V_j) = \mathrm{MI}(V_i, V_j)
            - \frac{1}{P}\sum_{p=1}^{P}\mathrm{MI}(V_i, \pi_p(V_j)),

    with :math:`\pi_p` random permutations of the rows (seeded), so :math:`\mathrm{MI}^*` is
    about 0 for independent columns whatever their numbers of distinct codes, and exactly 0
    against a column whose codes are all distinct (an id). Off the diagonal it can be slightly
    negative; the diagonal holds each feature's entropy. Above ``max_rows`` rows the estimate
    uses a seeded sample of that many.

    Args:
        codes: ``int [n, k]``, one non-negative code per row and feature.
        n_permutations: :math:`P`.
        seed: seeds the permutations and the row sample.
        max_rows: rows used at most.

    Returns:
        ``float64 [k, k]`` symmetric matrix.
    """
    rng = np.random.default_rng(seed)
    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) > max_rows:
        codes = codes[np.sort(rng.choice(len(codes), max_rows, replace=False))]
    plain = _mi_matrix(codes)
    if len(codes) == 0:
        return plain
    chance = np.mean(
        [_mi_matrix(codes, rng.permutation(len(codes))) for _ in range(n_permutations)], axis=0
    )
    out = plain - chance
    np.fill_diagonal(out, np.diag(plain))
    return out


def _mi_matrix(codes: np.ndarray, permutation: np.ndarray | None = None) -> np.ndarray:
    """Plug-in MI of every pair of columns, the second column of each pair read through
    ``permutation`` when given (its marginal is unchanged)."""
    dense, sizes = _relabel(codes)
    n, k = dense.shape
    out = np.zeros((k, k))
    if n == 0:
        return out
    marginals = [np.bincount(dense[:, j], minlength=sizes[j]) / n for j in range(k)]
    for a in range(k):  # k is the number of features (a handful): no per-item loop
        for b in range(a, k):
            y = dense[:, b] if permutation is None else dense[permutation, b]
            out[a, b] = out[b, a] = _pair_mi(dense[:, a], y, sizes[b], marginals, a, b)
    return out


def _relabel(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column relabelled to ``0..c-1`` (so joint codes ``a * c_b + b`` stay small), and
    the ``c`` of every column."""
    codes = np.asarray(codes, dtype=np.int64)
    n, k = codes.shape
    dense = np.empty_like(codes)
    sizes = np.zeros(k, dtype=np.int64)
    for j in range(k):
        _, dense[:, j] = np.unique(codes[:, j], return_inverse=True)
        sizes[j] = dense[:, j].max() + 1 if n else 0
    return dense, sizes


def _pair_mi(
    x: np.ndarray, y: np.ndarray, size_y: int, marginals: list[np.ndarray], a: int, b: int
) -> float:
    """Plug-in MI of two relabelled columns (``y`` may be a permutation of column ``b``: the
    marginal is the same)."""
    keys, counts = np.unique(x * size_y + y, return_counts=True)
    p_ab = counts / len(x)
    p_a = marginals[a][keys // size_y]
    p_b = marginals[b][keys % size_y]
    return float(np.sum(p_ab * np.log(p_ab / (p_a * p_b))))


def multi_hot_codes(matrix: sp.csr_array | sp.csr_matrix) -> np.ndarray:
    """One code per row for the *set* of its stored columns (equal sets, equal codes).

    Each column gets a random 64-bit weight; a row's key is the sum of its columns' weights
    (wrapping), so two different sets collide with probability about :math:`2^{-64}`.
    """
    csr = sp.csr_array(matrix)
    weights = np.random.default_rng(0).integers(0, 2**62, csr.shape[1], dtype=np.int64)
    owner = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    keys = np.zeros(csr.shape[0], dtype=np.int64)
    with np.errstate(over="ignore"):
        np.add.at(keys, owner, weights[csr.indices])
    _, codes = np.unique(keys, return_inverse=True)
    return codes.astype(np.int64)


def dense_codes(values: np.ndarray, n_clusters: int = 16, seed: int = 0) -> np.ndarray:
    """A discrete code per row of a dense matrix: quantile bins for one column, else k-means.

    K-means is Lloyd's algorithm (20 iterations from distinct rows drawn at random, seeded) on
    standardised columns, vectorised over rows.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if x.shape[1] == 1:
        edges = np.quantile(x[:, 0], np.linspace(0, 1, n_clusters + 1)[1:-1])
        return np.searchsorted(edges, x[:, 0], side="right").astype(np.int64)
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    distinct = np.unique(x, axis=0)
    c = min(n_clusters, len(distinct))
    rng = np.random.default_rng(seed)
    centres = distinct[rng.choice(len(distinct), c, replace=False)]
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(20):
        d2 = (x**2).sum(1)[:, None] - 2 * x @ centres.T + (centres**2).sum(1)[None, :]
        labels = d2.argmin(1)
        counts = np.bincount(labels, minlength=c)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, x)
        nonempty = counts > 0
        centres[nonempty] = sums[nonempty] / counts[nonempty, None]
    return labels


def cfm_groups(mi: np.ndarray, rule: MaskRule = "seed_plus_half") -> np.ndarray:
    r"""The CFM masked set for every seed feature: ``bool [k, k]``, row :math:`s` is
    :math:`F_m` when :math:`f_s` is the seed, of :func:`masked_set_size` under ``rule`` (see
    the module docstring).

    Ties in mutual information go to the feature listed first.
    """
    mi = np.asarray(mi, dtype=np.float64)
    k = mi.shape[0]
    size = masked_set_size(k, rule)
    groups = np.zeros((k, k), dtype=bool)
    scores = mi.copy()
    np.fill_diagonal(scores, np.inf)  # the seed first, then its neighbours
    order = np.argsort(-scores, axis=1, kind="stable")[:, :size]
    np.put_along_axis(groups, order, True, axis=1)
    return groups
