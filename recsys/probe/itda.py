r"""ITDA: a dictionary of real activations, built greedily by matching pursuit.

From `"Inference-Time Decomposition of Activations (ITDA)"
<https://arxiv.org/abs/2505.17769>`_ (Leask, Nanda, Al Moubayed; ICML 2025), adapted to
recommenders: every user (or item) representation is one "activation", and a dictionary atom
is a real, unit-normalised representation that remembers which instance it came from.

**Encoding** is plain matching pursuit with :math:`k` steps over the atoms :math:`D`
(rows of unit norm); an atom may be chosen again:

.. math::

    r \leftarrow x;\quad \text{repeat } k:\; j^* = \arg\max_j |\langle r, D_j\rangle|,\;
    c_{j^*} \mathrel{+}= \langle r, D_{j^*}\rangle,\; r \mathrel{-}= \langle r, D_{j^*}\rangle
    D_{j^*}; \qquad \hat{x} = c^\top D

**Construction** streams the instances in a seeded order in batches: each is encoded with the
current dictionary, and those with normalised error

.. math::

    \mathrm{err}(x) = \frac{1}{d}\left\lVert \frac{x}{\lVert x\rVert}
        - \frac{\hat{x}}{\lVert \hat{x}\rVert}\right\rVert^2 = \frac{2 - 2\cos(x, \hat{x})}{d}

above :math:`\delta` become atoms. Unlike the paper's batch rule, a candidate is re-checked
against the atoms added earlier in the same batch, so near-duplicates within a batch are not
both added. Vectors are centred on the mean of the set first (the mean is added back on
decoding), so the dictionary spends no atom on the shared offset. The authors' code also
starts each batch by adding, unconditionally, up to :math:`d` of its most frequent distinct
vectors while the dictionary has fewer than :math:`d` atoms; there is no such bootstrap here
(with one vector per user that step picks the first rows in sort order, an arbitrary set),
so the first atoms are the first instances the error rule admits; the dictionary size
changes by at most :math:`d`.

**Similarity** of two models (same instances, same stream) is the Jaccard index of their atom
ids, :math:`J(A, B) = |S_A \cap S_B| / |S_A \cup S_B|`: two models that find the same
instances hard to explain from the others have learned similar geometry. The report sets it
against the Jaccard index two random id sets of the same sizes would have
(:func:`chance_jaccard`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class ITDADictionary:
    """Atoms (unit rows), the instance id of each, and the encoding settings."""

    atoms: Tensor
    """``[n_atoms, d]``, unit L2 rows."""
    ids: np.ndarray
    """``[n_atoms]`` row index (instance) each atom came from."""
    mean: Tensor
    """``[d]`` the centre subtracted before encoding."""
    k: int
    delta: float

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, x: Tensor) -> Tensor:
        """Matching-pursuit coefficients ``[B, n_atoms]`` of ``x`` ``[B, d]``."""
        return matching_pursuit(x - self.mean, self.atoms, self.k)

    def reconstruct(self, x: Tensor) -> Tensor:
        """:math:`\\hat{x}` ``[B, d]``."""
        return self.encode(x) @ self.atoms + self.mean


def matching_pursuit(x: Tensor, atoms: Tensor, k: int) -> Tensor:
    """``k`` steps of matching pursuit of every row of ``x`` ``[B, d]``; codes ``[B, n]``."""
    codes = torch.zeros(x.shape[0], atoms.shape[0], dtype=x.dtype)
    if atoms.shape[0] == 0:
        return codes
    residual = x.clone()
    rows = torch.arange(x.shape[0])
    for _ in range(k):
        corr = residual @ atoms.T
        best = corr.abs().argmax(dim=1)
        coef = corr[rows, best]
        codes.index_put_((rows, best), coef, accumulate=True)
        residual -= coef[:, None] * atoms[best]
    return codes


def normalized_error(x: Tensor, x_hat: Tensor) -> Tensor:
    """:math:`\\mathrm{err}` of every row: mean squared difference of the unit vectors."""
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    hn = x_hat / x_hat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (xn - hn).pow(2).mean(dim=1)


def default_delta(d: int, cosine: float = 0.9) -> float:
    """:math:`\\delta` at which an instance joins when :math:`\\cos(x, \\hat{x})` < ``cosine``."""
    return (2.0 - 2.0 * cosine) / d


def build_itda(
    x: Tensor,
    k: int = 8,
    delta: float | None = None,
    batch_size: int = 64,
    seed: int = 0,
    max_atoms: int | None = None,
) -> ITDADictionary:
    """Greedily build the dictionary from the rows of ``x`` ``[n, d]``.

    Args:
        x: the representations (one row per instance; ids are row indices).
        k: matching-pursuit steps.
        delta: error threshold; None means :func:`default_delta` (cosine 0.9).
        batch_size: instances encoded together.
        seed: the stream order (a permutation of the rows); use the same seed for models that
            are compared.
        max_atoms: stop adding atoms at this size (the dictionary is then frozen).
    """
    x = x.detach().float()
    n, d = x.shape
    delta = default_delta(d) if delta is None else float(delta)
    mean = x.mean(0)
    centred = x - mean
    order = np.random.default_rng(seed).permutation(n)
    atoms = torch.zeros(0, d)
    ids: list[int] = []
    for start in range(0, n, batch_size):
        if max_atoms is not None and len(ids) >= max_atoms:
            break
        batch_ids = order[start : start + batch_size]
        xb = centred[torch.from_numpy(batch_ids)]
        errors = normalized_error(xb, matching_pursuit(xb, atoms, k) @ atoms)
        n_before = atoms.shape[0]
        for pos in np.flatnonzero(errors.numpy() > delta):
            if max_atoms is not None and len(ids) >= max_atoms:
                break
            vec = xb[pos : pos + 1]
            if atoms.shape[0] > n_before:  # re-check against this batch's new atoms
                err = normalized_error(vec, matching_pursuit(vec, atoms, k) @ atoms)
                if float(err) <= delta:
                    continue
            norm = vec.norm()
            if float(norm) <= 1e-12:
                continue
            atoms = torch.cat([atoms, vec / norm])
            ids.append(int(batch_ids[pos]))
    return ITDADictionary(atoms, np.asarray(ids, dtype=np.int64), mean, k, delta)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """:math:`|A \\cap B| / |A \\cup B|` of two id sets (1.0 for two empty sets)."""
    sa, sb = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def itda_fvu(dictionary: ITDADictionary, x: Tensor, batch_size: int = 4096) -> float:
    """Fraction of variance of ``x`` left unexplained by the dictionary's reconstruction."""
    x = x.detach().float()
    recon = torch.cat(
        [dictionary.reconstruct(x[s : s + batch_size]) for s in range(0, len(x), batch_size)]
    )
    return float((recon - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12))


def chance_jaccard(a: int, b: int, n: int) -> float:
    """Expected Jaccard index of two uniformly random subsets of sizes ``a`` and ``b`` of ``n``
    ids: with :math:`E|A \\cap B| = ab/n`, about :math:`(ab/n) / (a + b - ab/n)`. Two models'
    similarity means something only well above this."""
    if n <= 0 or a + b == 0:
        return 1.0
    inter = a * b / n
    return inter / (a + b - inter)
