r"""Posterior-collapse diagnostics for a Gaussian encoder.

Given the posterior means :math:`\mu_{u,l}` and log-variances :math:`\log\sigma^2_{u,l}` of a set
of users and the prior :math:`\mathcal{N}(0, v_l)` (:math:`v_l = 1` for the standard prior), the
per-user, per-dimension KL is

.. math::
    \mathrm{KL}_{u,l} = \tfrac12\Big(\frac{\mu_{u,l}^2 + \sigma_{u,l}^2}{v_l} - 1
        - \log\sigma_{u,l}^2 + \log v_l\Big)

and the statistics follow the panel of Dang et al. (ICLR 2024) and the AU rule of Burda et al.
(ICLR 2016):

- ``kl_total`` :math:`= \frac1N\sum_u\sum_l \mathrm{KL}_{u,l}` (nats per user, unweighted);
- ``kl_per_dim[l]`` :math:`= \frac1N\sum_u \mathrm{KL}_{u,l}`;
- ``active_units`` :math:`= \#\{l : \mathrm{Var}_u(\mu_{u,l}) > \text{threshold}\}` (0.01);
- ``collapsed_fraction`` :math:`= 1 - \text{active\_units} / K`;
- ``collapsed_dims_eps`` :math:`= \#\{l : P_u[\mathrm{KL}_{u,l} < \varepsilon] \ge 1-\delta\}`,
  the :math:`(\varepsilon,\delta)`-collapse of Lucas et al. (2019);
- ``au_fraction_dang`` :math:`= 1 - \mathrm{mean}_{u,l}\,\mathbb{1}[\mathrm{KL}_{u,l} < 0.01]`;
- ``usage_ratio[l]`` :math:`= \mathrm{Var}_u(\mu_{u,l}) / v_l` (about 1 for a fully used axis of
  an ARD prior, about 0 for an unused one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["CollapseStats", "collapse_stats", "gaussian_kl"]


def gaussian_kl(mu: Tensor, logvar: Tensor, prior_var: Tensor | None = None) -> Tensor:
    r""":math:`\mathrm{KL}(\mathcal{N}(\mu, \sigma^2) \,\|\, \mathcal{N}(0, v))` per entry.

    Args:
        mu, logvar: ``[N, K]`` posterior means and log-variances.
        prior_var: ``[K]`` prior variances :math:`v`; None is the standard normal prior.
    """
    if prior_var is None:
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return 0.5 * ((mu.pow(2) + logvar.exp()) / prior_var - 1.0 - logvar + prior_var.log())


@dataclass
class CollapseStats:
    """The collapse panel of one encoder on one set of users (see the module docstring)."""

    kl_total: float
    active_units: int
    collapsed_fraction: float
    collapsed_dims_eps: int
    au_fraction_dang: float
    kl_per_dim: np.ndarray
    mean_variance: np.ndarray
    """:math:`\\mathrm{Var}_u(\\mu_{u,l})` per dimension."""
    prior_var: np.ndarray
    usage_ratio: np.ndarray
    n_users: int

    @property
    def latent_dim(self) -> int:
        return len(self.kl_per_dim)

    def scalars(self) -> dict[str, float]:
        """The per-epoch numbers, for the trainer's history and MLflow."""
        return {
            "kl_total": self.kl_total,
            "active_units": float(self.active_units),
            "collapsed_fraction": self.collapsed_fraction,
            "collapsed_dims_eps": float(self.collapsed_dims_eps),
            "au_fraction_dang": self.au_fraction_dang,
        }

    def to_json(self) -> dict[str, object]:
        return {
            **self.scalars(),
            "latent_dim": self.latent_dim,
            "n_users": self.n_users,
            "kl_per_dim": self.kl_per_dim.tolist(),
            "mean_variance": self.mean_variance.tolist(),
            "prior_var": self.prior_var.tolist(),
            "usage_ratio": self.usage_ratio.tolist(),
        }


def collapse_stats(
    mu: Tensor,
    logvar: Tensor,
    prior_var: Tensor | None = None,
    threshold: float = 0.01,
    eps: float = 0.01,
    delta: float = 0.05,
) -> CollapseStats:
    """The collapse panel from posterior parameters ``[N, K]`` of ``N >= 2`` users."""
    if mu.dim() != 2 or mu.shape != logvar.shape or mu.shape[0] < 2:
        raise ValueError(f"need [N >= 2, K] means and log-variances, got {tuple(mu.shape)}")
    mu, logvar = mu.double(), logvar.double()
    v = torch.ones(mu.shape[1], dtype=mu.dtype, device=mu.device)
    if prior_var is not None:
        v = prior_var.to(mu)
    kl = gaussian_kl(mu, logvar, v)  # [N, K]
    variance = mu.var(dim=0, unbiased=False)
    active = int((variance > threshold).sum())
    k = mu.shape[1]
    small = (kl < eps).double()
    return CollapseStats(
        kl_total=float(kl.sum(dim=1).mean()),
        active_units=active,
        collapsed_fraction=1.0 - active / k,
        collapsed_dims_eps=int((small.mean(dim=0) >= 1.0 - delta).sum()),
        au_fraction_dang=float(1.0 - small.mean()),
        kl_per_dim=kl.mean(dim=0).cpu().numpy(),
        mean_variance=variance.cpu().numpy(),
        prior_var=v.cpu().numpy(),
        usage_ratio=(variance / v).cpu().numpy(),
        n_users=int(mu.shape[0]),
    )
