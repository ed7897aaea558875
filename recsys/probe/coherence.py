r"""RecSAE's coherence metric: do a latent's top instances look alike to the base model?

RecSAE (arXiv 2411.06112; ``analysis/3_evaluation.py`` of the authors' ``anon`` branch) sets
the trained SAE against its baselines with a second number besides the confidence counts. For
latent :math:`j`, rank the instances by activation (positive activations only), walk down that
list keeping an instance only when its *de-duplication key* has not been kept yet (RecSAE's
key is the base model's top-1 recommended item of the instance, so instances the model treats
alike count once), stop at :math:`t` kept instances :math:`i_1, \dots, i_t`, and average the
cosine similarity of their base-model representations :math:`x` (the probed site's rows) over
the pairs:

.. math::

    \mathrm{coh}_j = \frac{2}{t(t-1)} \sum_{a < b} \cos(x_{i_a}, x_{i_b})

RecSAE uses :math:`t = 2` (one pair). A latent with fewer than two kept instances has no
coherence (NaN; RecSAE skips it). A *method's* coherence is the mean over its latents with
confidence at least 0.8 for the trained and the untrained SAE, and over all latents for the
raw neurons (:func:`method_coherence`). The probe uses RecSAE's key on a user site (the
model's top-1 item for the user, training items excluded); an item site's instances are
items, each its own key.

The cosines are of the raw representations, as in RecSAE's code, so they are not centred:
when every representation shares a large common direction, all pairs look alike. The chance
level, the mean cosine over all pairs of distinct instances, is

.. math::

    \bar{c} = \frac{\lVert \sum_i \hat{x}_i \rVert^2 - n}{n(n-1)}, \qquad
    \hat{x}_i = x_i / \lVert x_i \rVert

(:func:`chance_coherence`), shown beside it in the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from recsys.probe.concepts import LatentConcept


def top_distinct_instances(
    activations: np.ndarray,
    top: int = 2,
    keys: np.ndarray | None = None,
    pool: int = 32,
) -> np.ndarray:
    """The ``top`` most active instances of every latent with distinct ``keys``.

    Args:
        activations: ``[n, m]`` latent activations (only positive ones count).
        top: instances kept per latent.
        keys: ``[n]`` de-duplication key of every instance (None: every instance is distinct);
            of instances sharing a key, the most active one is kept.
        pool: candidates looked at per latent before falling back to a full sort (only for
            latents whose first ``pool`` candidates hold fewer than ``top`` distinct keys).

    Returns:
        ``int64 [top, m]``: instance indices in order of activation, ``-1`` where a latent has
        fewer than ``top`` (distinct) positive instances. Equal activations are ordered by
        instance index.
    """
    acts = np.asarray(activations, dtype=np.float32)
    n, m = acts.shape
    if top < 1:
        raise ValueError(f"top must be positive, got {top}")
    out = np.full((top, m), -1, dtype=np.int64)
    if n == 0 or m == 0:
        return out
    key = np.arange(n) if keys is None else np.asarray(keys).reshape(-1)
    if len(key) != n:
        raise ValueError(f"keys has {len(key)} entries for {n} instances")
    depth = min(n, top if keys is None else max(pool, top))
    cand = _top_rows(acts, depth)  # [depth, m], by activation then index
    values = np.take_along_axis(acts, cand, axis=0)
    positive = values > 0
    if keys is None:
        keep = positive
    else:
        ck = key[cand]
        earlier = np.tril(np.ones((depth, depth), dtype=bool), -1)  # [i, j]: j before i
        same = (ck[:, None, :] == ck[None, :, :]) & earlier[:, :, None] & positive[None, :, :]
        keep = positive & ~same.any(1)
    rank = np.cumsum(keep, axis=0) - 1
    slot = np.where(keep & (rank < top), rank, top)  # `top` = discarded
    full = np.full((top + 1, m), -1, dtype=np.int64)
    full[slot.ravel(), np.tile(np.arange(m), depth)] = cand.ravel()
    out[:] = full[:top]
    if depth < n:
        # the candidates ran out of distinct keys before `top` while more positives remain
        short = np.flatnonzero((keep.sum(0) < top) & ((acts > 0).sum(0) > depth))
        for j in short:
            out[:, j] = _distinct_column(acts[:, j], key, top)
    return out


def _top_rows(acts: np.ndarray, depth: int) -> np.ndarray:
    """Row indices of the ``depth`` largest values of every column, ``[depth, m]``, ordered by
    value (descending) and then by index."""
    _, idx = torch.topk(torch.from_numpy(acts), depth, dim=0, sorted=True)
    idx = idx.numpy()
    vals = np.take_along_axis(acts, idx, axis=0)
    # rows tied with the last candidate: torch.topk may have taken any of them; redo the
    # (rare) columns where a positive tie is cut, with a stable sort
    cut = vals[-1]
    cut_ties = (acts == cut[None, :]).sum(0) > (vals == cut[None, :]).sum(0)
    for j in np.flatnonzero(cut_ties & (cut > 0)):
        idx[:, j] = np.argsort(-acts[:, j], kind="stable")[:depth]
        vals[:, j] = acts[idx[:, j], j]
    order = np.lexsort((idx, -vals), axis=0)
    return np.take_along_axis(idx, order, axis=0)


def _distinct_column(a: np.ndarray, key: np.ndarray, top: int) -> np.ndarray:
    """One latent's ``top`` most active instances with distinct keys (``-1`` padded)."""
    pos = np.flatnonzero(a > 0)
    pos = pos[np.lexsort((pos, -a[pos]))]
    _, first = np.unique(key[pos], return_index=True)
    chosen = pos[np.sort(first)][:top]
    return np.concatenate([chosen, np.full(top - len(chosen), -1, dtype=np.int64)])


def latent_coherence(
    activations: np.ndarray,
    x: np.ndarray | torch.Tensor,
    *,
    top: int = 2,
    keys: np.ndarray | None = None,
) -> np.ndarray:
    """Coherence of every latent: mean pairwise cosine of its top distinct instances' ``x``.

    Args:
        activations: ``[n, m]`` latent activations.
        x: ``[n, d]`` base-model representations of the instances (the probed site).
        top: instances per latent (RecSAE: 2).
        keys: ``[n]`` de-duplication keys (RecSAE: the top-1 recommended item); None: none.

    Returns:
        ``float64 [m]``; NaN for latents with fewer than two distinct positive instances.
    """
    unit, _ = _unit_rows(x)
    idx = top_distinct_instances(activations, top, keys)  # [t, m]
    valid = idx >= 0
    emb = unit[np.where(valid, idx, 0)]  # [t, m, d]
    gram = np.einsum("imd,jmd->mij", emb, emb)  # [m, t, t]
    pairs = valid.T[:, :, None] & valid.T[:, None, :] & np.triu(np.ones((top, top), bool), 1)
    count = pairs.sum((1, 2))
    total = (gram * pairs).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _unit_rows(x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``x`` scaled to unit length in float64 (a zero row stays zero), and the row
    norms ``[n, 1]``."""
    xs = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    xs = xs.astype(np.float64)
    norms = np.linalg.norm(xs, axis=1, keepdims=True)
    return xs / np.maximum(norms, 1e-12), norms


def chance_coherence(x: np.ndarray | torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of distinct rows of ``x`` ``[n, d]`` (exact)."""
    unit, norms = _unit_rows(x)
    n = len(unit)
    if n < 2:
        return math.nan
    # a zero row has cosine 0 with everything, and its own "self-cosine" is 0, not 1
    self_sum = float((norms.ravel() > 1e-12).sum())
    total = float(np.square(unit.sum(0)).sum())
    return (total - self_sum) / (n * (n - 1))


def method_coherence(
    coherence: Sequence[float] | np.ndarray,
    concepts: Sequence[LatentConcept] | None = None,
    threshold: float = 0.8,
) -> tuple[float, int]:
    """RecSAE's aggregate: the mean coherence over the interpretable latents of ``concepts``
    (confidence at least ``threshold``), or over every latent when ``concepts`` is None (the
    raw-neuron baseline). Latents without a coherence (NaN) are left out.

    Returns:
        ``(mean, latents averaged)``; the mean is NaN when no latent counts.
    """
    values = np.asarray(coherence, dtype=np.float64)
    use = np.isfinite(values)
    if concepts is not None:
        use &= np.array([c.interpretable(threshold) for c in concepts], dtype=bool)
    n = int(use.sum())
    return (float(values[use].mean()) if n else math.nan), n
