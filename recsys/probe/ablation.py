r"""Ablation and steering of SAE latents, measured on the model's recommendations.

For latent :math:`j` with concept items :math:`C_j` (the items that carry its concept), on the
instances :math:`X_j` where it is active (users for a user site, items for an item site), the
latent is scaled by :math:`\lambda` (0 ablates, >1 amplifies) and the change is decoded and
added to the *original* representation, so the SAE's reconstruction error is kept and only
the latent's own contribution moves (RecSAE notes 4.9):

.. math::

    x' = x + (\lambda - 1)\, z_j\, \mathrm{dec}(e_j)

where :math:`\mathrm{dec}(e_j)` is the decoder row mapped back to the input space. The model
re-scores with :math:`x'` (``model.scorer_from``) and, over the affected users, we measure

- :math:`\Delta\mathrm{share}` of :math:`C_j` in the top-K (training items excluded), before
  minus after (positive = the concept lost ground);
- the overlap :math:`|L \cap L'| / K` of the top-K lists before and after;
- validation NDCG@K of the affected users before and after.

Controls: the same measurement of :math:`C_j`'s share when ablating ``n_random`` random live
latents (each on its own active instances), and when adding a random direction of the same
norm as the ablated contribution on :math:`X_j`. The report's headline is the ratio of the mean
concept drop to the mean random-latent drop.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from recsys.eval.evaluator import Evaluator
from recsys.models.base import Recommender
from recsys.probe.sae import MAX_SEED, TopKSAE


class AblationConfig(BaseModel):
    """What to ablate and how to measure it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    k: int = Field(10, gt=0)
    """Length of the top-K lists compared."""
    n_latents: int = Field(30, ge=0)
    """Latents ablated at most (the most confident interpretable ones first)."""
    n_random: int = Field(5, ge=0)
    """Random live latents ablated as the control of each latent."""
    steer_scale: float = Field(3.0, ge=0.0)
    """:math:`\\lambda` of the steering experiment (1 turns it off)."""
    max_users: int = Field(2000, gt=0)
    """Users measured at most per latent (a seeded sample beyond that)."""
    seed: int = Field(0, ge=0, le=MAX_SEED)


@dataclass
class LatentEffect:
    """The measured effect of editing one latent."""

    latent: int
    concept: str
    n_instances: int
    n_users: int
    share_before: float
    share_ablated: float
    share_steered: float
    drop: float
    steer_gain: float
    random_latent_drop: float
    random_direction_drop: float
    overlap_ablated: float
    overlap_random: float
    ndcg_before: float
    ndcg_ablated: float
    random_latents: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def decode_delta(sae: TopKSAE, dz: Tensor, x: Tensor) -> Tensor:
    """The input-space change of ``x`` ``[B, d]`` when its latents change by ``dz`` ``[B, m]``."""
    delta_norm = dz @ sae.w_dec
    mode = sae.config.normalize
    if mode == "dataset":
        return delta_norm / sae.input_scale
    if mode == "layer":
        return delta_norm * sae.normalize(x)[1][1]
    return delta_norm


def _share(items: np.ndarray, concept: np.ndarray) -> np.ndarray:
    """Per-row share of ``items`` ``[n, k]`` (-1 = empty slot) that carry the concept."""
    valid = items >= 0
    hit = concept[np.where(valid, items, 0)] & valid
    return hit.sum(1) / np.maximum(valid.sum(1), 1)


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row :math:`|a \\cap b| / k` of two ``[n, k]`` lists."""
    same = (a[:, :, None] == b[:, None, :]) & (a[:, :, None] >= 0)
    return same.any(2).sum(1) / a.shape[1]


class Ablator:
    """Edits one site's representation through SAE latents and re-ranks.

    Args:
        model: the frozen recommender (``scorer_from`` must accept the site).
        reps: its ``representations()`` (detached).
        site: the probed site name; ``kind`` is ``"user"`` or ``"item"``.
        sae: the trained SAE; ``latents``: its activations of every row of the site ``[n, m]``.
        train, valid: the split's training and validation matrices.
        config: :class:`AblationConfig`.
    """

    def __init__(
        self,
        model: Recommender,
        reps: dict[str, Tensor],
        site: str,
        kind: str,
        sae: TopKSAE,
        latents: Tensor,
        train: sp.csr_array,
        valid: sp.csr_array,
        config: AblationConfig,
    ) -> None:
        self.model = model
        self.reps = reps
        self.site = site
        self.kind = kind
        self.sae = sae
        self.z = latents
        self.x = reps[site]
        self.train = sp.csr_array(train)
        self.valid = sp.csr_array(valid)
        self.config = config
        self.evaluator = Evaluator(topk=(config.k,), metrics=("ndcg",))
        n_users = self.train.shape[0]
        rng = np.random.default_rng(config.seed)
        # the users measured for an item site: one seeded sample for every latent
        users = np.arange(n_users)
        if n_users > config.max_users:
            users = np.sort(rng.choice(n_users, config.max_users, replace=False))
        self.item_site_users = users
        self._base_cache: dict[bytes, np.ndarray] = {}

    # -- scoring ---------------------------------------------------------------------------
    def _topk(self, site_matrix: Tensor, users: np.ndarray) -> np.ndarray:
        score_fn = self.model.scorer_from({**self.reps, self.site: site_matrix})
        items, _ = self.evaluator.topk(score_fn, users, self.config.k, exclude=[self.train])
        return np.asarray(items)

    def _ndcg(self, site_matrix: Tensor, users: np.ndarray) -> float:
        mask = np.zeros(self.valid.shape[0], dtype=np.float32)
        mask[users] = 1.0
        truth = sp.csr_array(sp.diags_array(mask) @ self.valid)
        if truth.nnz == 0:
            return float("nan")
        score_fn = self.model.scorer_from({**self.reps, self.site: site_matrix})
        result = self.evaluator.evaluate(score_fn, truth, exclude=[self.train])
        return float(result[f"ndcg_at_{self.config.k}"])

    def edited(self, rows: np.ndarray, dz: Tensor) -> Tensor:
        """The site matrix with ``rows`` moved by latent changes ``dz`` ``[len(rows), m]``."""
        out = self.x.clone()
        idx = torch.from_numpy(rows)
        out[idx] = self.x[idx] + decode_delta(self.sae, dz, self.x[idx])
        return out

    def scaled(self, latent: int, scale: float) -> tuple[np.ndarray, Tensor]:
        """(affected rows, edited site matrix) for latent ``latent`` scaled by ``scale``."""
        rows = np.flatnonzero(self.z[:, latent].numpy() > 0)
        dz = torch.zeros(len(rows), self.z.shape[1])
        dz[:, latent] = (scale - 1.0) * self.z[torch.from_numpy(rows), latent]
        return rows, self.edited(rows, dz)

    def _users_for(self, rows: np.ndarray) -> np.ndarray:
        if self.kind == "item":
            return self.item_site_users
        if len(rows) > self.config.max_users:
            rng = np.random.default_rng([self.config.seed, len(rows)])
            rows = np.sort(rng.choice(rows, self.config.max_users, replace=False))
        return rows

    def _base_topk(self, users: np.ndarray) -> np.ndarray:
        key = users.tobytes()
        if key not in self._base_cache:
            self._base_cache[key] = self._topk(self.x, users)
        return self._base_cache[key]

    # -- the experiment --------------------------------------------------------------------
    def effect(
        self, latent: int, concept: str, concept_items: np.ndarray, random_latents: list[int]
    ) -> LatentEffect:
        """Ablate and steer ``latent``; compare with ablating each of ``random_latents``."""
        rows, ablated = self.scaled(latent, 0.0)
        users = self._users_for(rows)
        before = self._base_topk(users)
        after = self._topk(ablated, users)
        share_before = float(_share(before, concept_items).mean())
        share_ablated = float(_share(after, concept_items).mean())
        overlap = float(_overlap(before, after).mean())
        steer_share = share_before
        if self.config.steer_scale != 1.0:
            _, steered = self.scaled(latent, self.config.steer_scale)
            steer_share = float(_share(self._topk(steered, users), concept_items).mean())

        # control 1: random live latents, each on its own active rows
        drops, overlaps = [], []
        for r in random_latents:
            r_rows, r_ablated = self.scaled(r, 0.0)
            r_users = self._users_for(r_rows)
            r_before = self._base_topk(r_users)
            r_after = self._topk(r_ablated, r_users)
            drops.append(
                float(
                    _share(r_before, concept_items).mean() - _share(r_after, concept_items).mean()
                )
            )
            overlaps.append(float(_overlap(r_before, r_after).mean()))

        # control 2: a random direction of the same norm on the same rows
        idx = torch.from_numpy(rows)
        contribution = decode_delta(
            self.sae,
            torch.zeros(len(rows), self.z.shape[1]).index_fill_(1, torch.tensor([latent]), 1.0)
            * self.z[idx, latent : latent + 1],
            self.x[idx],
        )
        gen = torch.Generator().manual_seed(self.config.seed * 100003 + latent)
        direction = torch.randn(self.x.shape[1], generator=gen)
        direction = direction / direction.norm()
        noise = -contribution.norm(dim=1, keepdim=True) * direction
        moved = self.x.clone()
        moved[idx] = self.x[idx] + noise
        dir_after = self._topk(moved, users)
        random_direction_drop = share_before - float(_share(dir_after, concept_items).mean())

        return LatentEffect(
            latent=latent,
            concept=concept,
            n_instances=len(rows),
            n_users=len(users),
            share_before=share_before,
            share_ablated=share_ablated,
            share_steered=steer_share,
            drop=share_before - share_ablated,
            steer_gain=steer_share - share_before,
            random_latent_drop=float(np.mean(drops)) if drops else float("nan"),
            random_direction_drop=random_direction_drop,
            overlap_ablated=overlap,
            overlap_random=float(np.mean(overlaps)) if overlaps else float("nan"),
            ndcg_before=self._ndcg(self.x, users),
            ndcg_ablated=self._ndcg(ablated, users),
            random_latents=list(random_latents),
        )


def concept_item_mask(attributes: list[str], names: list[str], items: sp.csr_array) -> np.ndarray:
    """Items carrying every item attribute of a concept (user attributes are ignored)."""
    index = {n: i for i, n in enumerate(names)}
    cols = [index[a] for a in attributes if a in index]
    if not cols:
        return np.zeros(items.shape[0], dtype=bool)
    return np.asarray(items[:, cols].sum(axis=1)).ravel() >= len(cols)


def summarize_effects(effects: list[LatentEffect]) -> dict[str, float]:
    """Means over the ablated latents and the headline ratio (concept drop / random drop).

    The ratio is NaN when no latent was ablated or no random latent was (``n_random=0``: there
    is no control), and infinite when the random control does not lower the concept's share at
    all (then the concept drop is what counts).
    """
    if not effects:
        return {"n_ablated": 0}
    drop = float(np.mean([e.drop for e in effects]))
    rand = _nanmean([e.random_latent_drop for e in effects])
    direction = float(np.mean([e.random_direction_drop for e in effects]))
    if math.isnan(rand):
        ratio = float("nan")
    else:
        ratio = drop / rand if rand > 0 else (math.inf if drop > 0 else float("nan"))
    return {
        "n_ablated": len(effects),
        "mean_share_before": float(np.mean([e.share_before for e in effects])),
        "mean_drop": drop,
        "mean_random_latent_drop": rand,
        "mean_random_direction_drop": direction,
        "drop_ratio_vs_random_latent": ratio,
        "mean_steer_gain": float(np.mean([e.steer_gain for e in effects])),
        "mean_overlap_ablated": float(np.mean([e.overlap_ablated for e in effects])),
        "mean_overlap_random": _nanmean([e.overlap_random for e in effects]),
        "mean_ndcg_before": _nanmean([e.ndcg_before for e in effects]),
        "mean_ndcg_ablated": _nanmean([e.ndcg_ablated for e in effects]),
        "share_lowered": float(np.mean([e.drop > 0 for e in effects])),
    }


def _nanmean(values: list[float]) -> float:
    """Mean of the finite-or-infinite values, NaN when every value is NaN (no warning)."""
    arr = np.asarray(values, dtype=float)
    kept = arr[~np.isnan(arr)]
    return float(kept.mean()) if len(kept) else float("nan")
