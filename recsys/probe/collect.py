"""Collect a frozen model's representation at a probe site, and score from edited ones.

A *site* is one of the tensors of ``model.representations()``: ``user`` and ``item`` (the
representations right before the dot-product scoring layer, RecSAE's probe position), or a
named internal state such as LightGCN's ``user_layer0``. Its rows are users or items: the
name's prefix says which, else its row count.

A site is a *scoring* site when ``model.scorer_from`` reads it: replacing it changes the
scores. Only then can the probe select the SAE on recommendation quality and ablate latents;
other sites are probed for reconstruction and concepts only.
"""

from __future__ import annotations

from dataclasses import dataclass

import scipy.sparse as sp
import torch
from torch import Tensor

from recsys.errors import ConfigError
from recsys.models.base import Recommender


class ProbeSiteError(ConfigError):
    """The requested probe site does not exist or cannot be probed."""


@dataclass
class Site:
    """One probe site of a frozen model."""

    name: str
    kind: str
    """``"user"`` or ``"item"``: what a row is."""
    x: Tensor
    """``[n, d]`` float32 representation (detached, on the CPU)."""
    scoring: bool
    """Whether ``scorer_from`` reads this site."""

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def d(self) -> int:
        return int(self.x.shape[1])


def freeze(model: Recommender) -> Recommender:
    """Evaluation mode and no gradients for every parameter (the probe never changes it)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def collect_representations(
    model: Recommender, history: sp.csr_array | None = None
) -> dict[str, Tensor]:
    """``model.representations()`` detached, float32, on the CPU; ``history`` (a fold-in
    model's user rows, for splits with held-out users) is passed on when given."""
    freeze(model)
    reps = model.representations() if history is None else model.representations(history)
    return {k: v.detach().float().cpu().contiguous() for k, v in reps.items()}


def site_kind(name: str, x: Tensor, n_users: int, n_items: int) -> str:
    """``"user"`` or ``"item"`` from the name's prefix or, failing that, the row count."""
    lowered = name.lower()
    if lowered.startswith("user"):
        return "user"
    if lowered.startswith("item"):
        return "item"
    rows = int(x.shape[0])
    if rows == n_users and rows != n_items:
        return "user"
    if rows == n_items and rows != n_users:
        return "item"
    raise ProbeSiteError(
        f"site {name!r} has {rows} rows, which is neither the {n_users} users nor the "
        f"{n_items} items (or both); name it user_* or item_*"
    )


@torch.no_grad()
def is_scoring_site(
    model: Recommender, reps: dict[str, Tensor], name: str, n_probe: int = 8
) -> bool:
    """Whether replacing site ``name`` changes ``scorer_from``'s scores for a few users."""
    try:
        base = model.scorer_from(reps)
    except NotImplementedError:
        return False
    n_users = int(model.n_users or 0)
    if n_users == 0:
        return False
    users = torch.arange(min(n_users, n_probe))
    gen = torch.Generator().manual_seed(0)
    noisy = reps[name] + torch.randn(reps[name].shape, generator=gen) * (reps[name].std() + 1.0)
    try:
        moved = model.scorer_from({**reps, name: noisy})
        return not torch.allclose(base(users), moved(users))
    except (KeyError, RuntimeError, ValueError):
        return False


def resolve_site(model: Recommender, reps: dict[str, Tensor], name: str) -> Site:
    """The :class:`Site` ``name`` of ``model``, with a clear error for an unknown name."""
    if not reps:
        raise ProbeSiteError(
            f"{type(model).__name__} exposes no representations to probe "
            "(its representations() is empty)"
        )
    if name not in reps:
        raise ProbeSiteError(
            f"unknown probe site {name!r} for {type(model).__name__}; "
            f"its representations are: {', '.join(sorted(reps))}"
        )
    x = reps[name]
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ProbeSiteError(f"site {name!r} has shape {tuple(x.shape)}; expected [rows, width]")
    if not torch.isfinite(x).all():
        raise ProbeSiteError(f"site {name!r} holds NaN or infinite values")
    kind = site_kind(name, x, int(model.n_users or 0), int(model.n_items or 0))
    return Site(name, kind, x, is_scoring_site(model, reps, name))
