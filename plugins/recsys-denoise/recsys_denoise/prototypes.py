r"""Per-user prototypes in an item feature space, for :class:`~recsys_denoise.ProtoDenoise`.

Everything here runs once at set-up, vectorised over the training matrix's stored entries
(CSR order): no loop over users or interactions.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds


def normalise_features(features: np.ndarray) -> np.ndarray:
    r"""Centre the columns, then scale rows to unit norm:
    :math:`\mathbf{e}_i = (\mathbf{f}_i - \bar{\mathbf{f}}) / \lVert\cdot\rVert`.

    Centring matters for non-negative features (multi-hot genres), whose raw cosines are all
    positive and say little; a row that is zero after centring stays zero.
    """
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def collaborative_features(train: sp.csr_array, dim: int = 32, seed: int = 0) -> np.ndarray:
    r"""Item factors :math:`\mathbf{V}\boldsymbol{\Sigma}` of a truncated SVD of the training
    matrix: the feature space used when no item modality is given."""
    x = sp.csr_array(train, dtype=np.float64)
    if min(x.shape) < 2:  # one user or one item: svds needs k < min(shape); a dense SVD
        _, s, vt = np.linalg.svd(x.toarray(), full_matrices=False)
        return (vt.T * s).astype(np.float32)
    k = max(1, min(dim, min(train.shape) - 1))
    v0 = np.random.default_rng(seed).random(min(x.shape))
    _, s, vt = svds(x, k=k, v0=v0)
    return (vt.T * s).astype(np.float32)


def _rowwise_dot(a: np.ndarray, b: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray):
    out = np.empty(len(rows_a), dtype=np.float32)
    step = 1 << 16  # bounded memory: 65k rows of d floats at a time
    for start in range(0, len(rows_a), step):
        sl = slice(start, start + step)
        out[sl] = np.einsum("ij,ij->i", a[rows_a[sl]], b[rows_b[sl]])
    return out


def user_prototypes(train: sp.csr_array, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Robust per-user prototypes and every training interaction's cosine to its user's one.

    .. math::
        \mathbf{p}^{(0)}_u = \frac{\sum_{i\in I_u}\mathbf{e}_i}{\lVert\cdot\rVert},\qquad
        w_{ui} = \max(\cos(\mathbf{e}_i, \mathbf{p}^{(0)}_u), 0),\qquad
        \mathbf{p}_u = \frac{\sum_{i\in I_u} w_{ui}\,\mathbf{e}_i}{\lVert\cdot\rVert}

    (one re-weighting pass, so off-profile items pull the prototype less), and
    :math:`s_{ui} = \cos(\mathbf{e}_i, \mathbf{p}_u)`.

    Args:
        train: binary ``n_users x n_items`` CSR matrix.
        items: unit-norm item features ``[n_items, d]``.

    Returns:
        prototypes ``[n_users, d]`` (unit norm, zero for users without items) and
        ``s`` aligned with ``train``'s stored entries ``[nnz]``.
    """
    users = np.repeat(np.arange(train.shape[0]), np.diff(train.indptr))
    cols = train.indices

    def normalised(m: np.ndarray) -> np.ndarray:
        n = np.linalg.norm(m, axis=1, keepdims=True)
        return (m / np.where(n > 0, n, 1.0)).astype(np.float32)

    ones = sp.csr_array((np.ones(len(cols), np.float32), cols, train.indptr), shape=train.shape)
    proto = normalised(ones @ items)
    sim = _rowwise_dot(items, proto, cols, users)
    weighted = sp.csr_array((np.maximum(sim, 0.0) + 1e-6, cols, train.indptr), shape=train.shape)
    proto = normalised(weighted @ items)
    return proto, _rowwise_dot(items, proto, cols, users)


def anchors(train: sp.csr_array, sim: np.ndarray, share: float, min_anchors: int) -> np.ndarray:
    r"""Boolean ``[nnz]``: each user's :math:`k_u = \max(k_{min}, \lceil \text{share}\cdot
    |I_u|\rceil)` interactions closest to the prototype (never dropped)."""
    counts = np.diff(train.indptr)
    users = np.repeat(np.arange(train.shape[0]), counts)
    order = np.lexsort((-sim, users))  # by user, then by decreasing similarity
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - np.repeat(train.indptr[:-1], counts)
    k = np.maximum(min_anchors, np.ceil(share * counts - 1e-9).astype(np.int64))
    return rank < k[users]


def contrast_posterior(
    train: sp.csr_array,
    items: np.ndarray,
    prototypes: np.ndarray,
    sim: np.ndarray,
    n_contrast: int,
    temperature: float,
    seed: int = 0,
) -> np.ndarray:
    r"""How much closer an item is to its user's prototype than to other users' ones.

    .. math::
        q_{ui} = \frac{e^{s_{ui}/\tau}}{e^{s_{ui}/\tau} + \frac{1}{|C_u|}\sum_{c\in C_u}
        e^{\cos(\mathbf{e}_i, \mathbf{p}_c)/\tau}}
        = \sigma\!\left(\frac{s_{ui}}{\tau} - \operatorname{LME}_{c\in C_u}
        \frac{\cos(\mathbf{e}_i, \mathbf{p}_c)}{\tau}\right)

    with LME the log-mean-exp and :math:`C_u` ``n_contrast`` *other* users' prototypes: one
    seeded sample of ``n_contrast + 1`` users with items is drawn for everyone, and each user
    takes the first ``n_contrast`` of them that are not itself (a uniform sample of the other
    users; with fewer users, all the others). A user with no other user to contrast with gets
    the neutral :math:`q = 1/2`. This is CAPro's prototype softmax with the contrast classes
    pooled into one, so :math:`q = 1/2` means "as close to the user's own taste as to an
    average other user's". Returns ``q`` aligned with ``train``'s stored entries.
    """
    active = np.flatnonzero(np.diff(train.indptr) > 0)
    rng = np.random.default_rng(seed)
    # one more than needed, so that a user drawn among them can be left out of its own set
    chosen = rng.choice(active, size=min(n_contrast + 1, len(active)), replace=False)
    logits = (items @ prototypes[chosen].T).astype(np.float64) / temperature  # [n_items, C+1]
    # the column each user leaves out: its own, or the spare one (-1: none, all are needed)
    spare = len(chosen) - 1 if len(chosen) > n_contrast else -1
    left_out = np.full(train.shape[0], spare, dtype=np.int64)
    left_out[chosen] = np.arange(len(chosen))
    users = np.repeat(np.arange(train.shape[0]), np.diff(train.indptr))
    entry_left_out = left_out[users]
    q = np.full(len(users), 0.5)
    columns = np.arange(len(chosen))
    # at most n_contrast + 2 distinct contrast sets: one pass per set, not per user
    for column in np.unique(entry_left_out):
        kept = logits[:, columns != column]
        if kept.shape[1] == 0:  # the only user with items: nothing to contrast with
            continue
        top = kept.max(axis=1, keepdims=True)
        lme = (top + np.log(np.exp(kept - top).mean(axis=1, keepdims=True))).ravel()
        at = entry_left_out == column
        z = sim[at].astype(np.float64) / temperature - lme[train.indices[at]]
        q[at] = 1.0 / (1.0 + np.exp(-z))
    return q.astype(np.float32)


def anchor_count(n: int, share: float, min_anchors: int) -> int:
    """The number of anchors of a user with ``n`` training items (all of them if fewer)."""
    return min(n, max(min_anchors, math.ceil(share * n - 1e-9)))
