r"""Mult-VAE, Mult-DAE (Liang et al., WWW 2018) and the ARD-prior VAE (Saha et al., 2025).

All three read a user's interaction row :math:`\mathbf{x}_u \in \{0,1\}^{|\mathcal{I}|}`,
L2-normalise it, apply input dropout while training, encode it with a tanh MLP, and decode a
code back to item logits :math:`f_\theta(\cdot)` scored with the multinomial log-likelihood

.. math::
    \log p_\theta(\mathbf{x}_u \mid \mathbf{z}_u)
        = \sum_i x_{ui} \log \operatorname{softmax}(f_\theta(\mathbf{z}_u))_i .

Scoring is fold-in: the scores of a user are the decoder's logits at the (noise-free) code of
the user's history row, so any user with a history can be scored, including users never seen
in training (the ``heldout_users`` split). There are no per-user parameters.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from recsys.data.dataset import Dataset
from recsys.models.base import ModelConfig, Recommender, ScoreFn, history_rows
from recsys_vae.diagnostics import CollapseStats, collapse_stats, gaussian_kl

__all__ = ["ARDVAE", "ARDVAEConfig", "MultDAE", "MultDAEConfig", "MultVAE", "MultVAEConfig"]

log = logging.getLogger(__name__)

_ROW_BATCH = 2048  # users encoded per block outside training (diagnostics, representations)

Width = Annotated[int, Field(gt=0)]
"""A layer width: a zero width would train an encoder that ignores its input, silently."""


def _mlp(dims: list[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))


def _run(layers: nn.ModuleList, h: Tensor, final_activation: bool) -> Tensor:
    for i, layer in enumerate(layers):
        h = layer(h)
        if i < len(layers) - 1 or final_activation:
            h = torch.tanh(h)
    return h


class MultDAEConfig(ModelConfig):
    """Hyper-parameters of :class:`MultDAE` (the paper's ``[I-200-I]``)."""

    hidden_dims: tuple[Width, ...] = ()
    """Widths of the hidden layers between the input and the code (mirrored in the decoder)."""
    latent_dim: int = Field(200, gt=0)
    """Width of the code."""
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    """Input dropout rate while training (the paper's keep probability 0.5)."""
    l2: float = Field(0.01 / 500, ge=0.0)
    r"""Weight penalty :math:`\lambda \sum \lVert W \rVert_F^2` on the weight matrices (not the
    biases); the paper's ``lam = 0.01 / batch_size`` with batch 500."""


class MultVAEConfig(ModelConfig):
    """Hyper-parameters of :class:`MultVAE` (the paper's ``[I-600-200-600-I]``)."""

    hidden_dims: tuple[Width, ...] = (600,)
    """Widths of the hidden layers between the input and the code (mirrored in the decoder)."""
    latent_dim: int = Field(200, gt=0)
    """Dimension :math:`K` of the latent code."""
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    """Input dropout rate while training."""
    l2: float = Field(0.0, ge=0.0)
    """Weight penalty on the weight matrices (the paper uses none for the VAE)."""
    anneal_cap: float = Field(0.2, ge=0.0)
    r"""The final KL weight :math:`\beta`."""
    total_anneal_steps: int = Field(200_000, ge=0)
    r""":math:`\beta_t = \min(\text{anneal\_cap}, t / \text{total\_anneal\_steps})` at training
    step :math:`t`; 0 uses ``anneal_cap`` from the first step. :math:`\beta` reaches the cap at
    step ``anneal_cap * total_anneal_steps``, so rescale this to the run's number of steps
    (epochs times training users / batch size): the paper's 200000 is for ML-20M at batch 500
    (234 steps per epoch, the cap reached near epoch 171 of 200)."""
    diag_users: int = Field(2000, gt=1)
    """Training users (evenly spaced) on which the collapse diagnostics are computed."""
    active_threshold: float = Field(0.01, gt=0.0)
    r"""A latent dimension is active when :math:`\mathrm{Var}_u(\mu_{u,l})` exceeds this."""
    collapse_eps: float = Field(0.01, gt=0.0)
    r""":math:`\varepsilon` of the :math:`(\varepsilon,\delta)`-collapse count."""
    collapse_delta: float = Field(0.05, gt=0.0, lt=1.0)
    r""":math:`\delta` of the :math:`(\varepsilon,\delta)`-collapse count."""


class ARDVAEConfig(MultVAEConfig):
    """Hyper-parameters of :class:`ARDVAE`."""

    n_stat: int = Field(10_000, gt=1)
    """Training users (a fresh random subset each epoch) the prior variances are estimated on."""
    min_prior_var: float = Field(1e-4, gt=0.0)
    """Floor of the estimated prior variances (keeps the KL finite for a dead axis)."""
    relevance_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    r"""An axis is relevant when :math:`\mathrm{Var}_u(\mu_{u,l}) / v_l` exceeds this share of
    its prior variance (about 1 for a used axis, about 0 for an unused one). Since
    :math:`v_l \approx \mathrm{Var}_u(\mu_{u,l}) + \mathbb{E}_u[\sigma^2_{u,l}]`, the default
    0.5 reads: the spread of the posterior means exceeds the posterior noise."""


class _MultAutoencoder(Recommender):
    """Shared parts: the row input, the encoder/decoder stacks and fold-in scoring."""

    batch_kind = "user_rows"
    fold_in = True
    variational: ClassVar[bool] = False

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        cfg = self.config
        hidden = list(cfg.hidden_dims)
        code = cfg.latent_dim * (2 if self.variational else 1)
        self.encoder = _mlp([self.n_items, *hidden, code])
        self.decoder = _mlp([cfg.latent_dim, *hidden[::-1], self.n_items])

    def reset_parameters(self) -> None:
        # Xavier weights and near-zero biases, as in the paper's code
        for layer in [*self.encoder, *self.decoder]:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.trunc_normal_(layer.bias, std=0.001, a=-0.002, b=0.002)

    @property
    def device(self) -> torch.device:
        return self.decoder[0].weight.device

    # -- the network --------------------------------------------------------------------------
    def _input(self, rows: Tensor, dropout: bool) -> Tensor:
        # rows arrive as float32; the weights' dtype if the model was cast (model.double())
        h = F.normalize(rows.to(self.decoder[0].weight.dtype), p=2.0, dim=1)
        if dropout and self.config.dropout > 0:
            h = F.dropout(h, p=self.config.dropout, training=True)
        return h

    def encode(self, rows: Tensor, dropout: bool = False) -> tuple[Tensor, Tensor | None]:
        """``(code, logvar)``: for a VAE the posterior mean and log-variance ``[B, K]``; for
        the DAE the tanh code and None."""
        h = _run(self.encoder, self._input(rows, dropout), final_activation=not self.variational)
        if not self.variational:
            return h, None
        k = self.config.latent_dim
        return h[:, :k], h[:, k:]

    def decode(self, z: Tensor) -> Tensor:
        """Item logits ``[B, n_items]`` of codes ``[B, K]``."""
        return _run(self.decoder, z, final_activation=False)

    def _penalty(self) -> Tensor:
        return sum(layer.weight.pow(2).sum() for layer in [*self.encoder, *self.decoder])

    @staticmethod
    def multinomial_nll(logits: Tensor, rows: Tensor) -> Tensor:
        r""":math:`-\frac1B \sum_u \sum_i x_{ui} \log \operatorname{softmax}(\text{logits}_u)_i`."""
        return -(F.log_softmax(logits, dim=1) * rows).sum(dim=1).mean()

    # -- scoring ------------------------------------------------------------------------------
    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        history = self.history_matrix(history)

        def score(users: Tensor) -> Tensor:
            with torch.no_grad():
                code, _ = self.encode(history_rows(history, users, self.device))
                return self.decode(code)

        return score

    def _codes(self, users: np.ndarray, history: sp.csr_array | None = None):
        """Noise-free ``(code, logvar)`` of ``users``' rows, in blocks."""
        history = self.train_matrix if history is None else history
        codes, logvars = [], []
        with torch.no_grad():
            for start in range(0, len(users), _ROW_BATCH):
                block = history_rows(history, users[start : start + _ROW_BATCH], self.device)
                code, logvar = self.encode(block)
                codes.append(code)
                logvars.append(logvar)
        code = torch.cat(codes) if codes else torch.zeros(0, self.config.latent_dim)
        logvar = torch.cat(logvars) if self.variational and logvars else None
        return code, logvar

    def representations(self, history: sp.csr_array | None = None) -> dict[str, Tensor]:
        """``user``: the code of each user's row of ``history`` (default the training matrix;
        the posterior mean for a VAE)."""
        self.check_fitted()
        rows = self.history_matrix(history)
        code, _ = self._codes(np.arange(rows.shape[0]), rows)
        return {"user": code}

    def scorer_from(self, representations: dict[str, Tensor]) -> ScoreFn:
        codes = representations["user"]

        def score(users: Tensor) -> Tensor:
            with torch.no_grad():
                return self.decode(codes.index_select(0, users.to(codes.device)))

        return score


class MultDAE(_MultAutoencoder):
    r"""Mult-DAE: a denoising autoencoder with a multinomial likelihood (Liang et al., WWW 2018,
    `arXiv:1802.05814 <https://arxiv.org/abs/1802.05814>`_).

    .. math::
        \mathcal{L} = -\frac1B\sum_u \sum_i x_{ui}
            \log \operatorname{softmax}\big(f_\theta(g_\phi(\tilde{\mathbf{x}}_u))\big)_i
            + \lambda \sum_W \lVert W \rVert_F^2

    with :math:`\tilde{\mathbf{x}}_u` the L2-normalised row after dropout and :math:`g_\phi` a
    tanh encoder.

    Args:
        config (MultDAEConfig): layer widths, dropout, weight penalty.

    Shapes:
        - loss: ``rows`` :math:`[B, |\mathcal{I}|]` -> named scalars ``nll``, ``reg``
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "multdae"
    config_class = MultDAEConfig

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        rows = batch["rows"]
        code, _ = self.encode(rows, dropout=self.training)
        terms = {"nll": self.multinomial_nll(self.decode(code), rows)}
        if self.config.l2 > 0:
            terms["reg"] = self.config.l2 * self._penalty()
        return terms


class MultVAE(_MultAutoencoder):
    r"""Mult-VAE: a VAE with a multinomial likelihood and KL annealing (Liang et al., WWW 2018,
    `arXiv:1802.05814 <https://arxiv.org/abs/1802.05814>`_).

    .. math::
        q_\phi(\mathbf{z}_u \mid \mathbf{x}_u) = \mathcal{N}(\mu_\phi(\mathbf{x}_u),
            \operatorname{diag}\sigma^2_\phi(\mathbf{x}_u)), \qquad
        \mathcal{L}_\beta = -\frac1B\sum_u \Big(\mathbb{E}_{q}[\log p_\theta(\mathbf{x}_u \mid
            \mathbf{z}_u)] - \beta_t\, \mathrm{KL}(q_\phi \,\|\, p(\mathbf{z}))\Big)

    with one reparameterised sample :math:`\mathbf{z} = \mu + \sigma \odot \epsilon`, the prior
    :math:`p(\mathbf{z}) = \mathcal{N}(0, I)`, and
    :math:`\beta_t = \min(\text{anneal\_cap}, t / \text{total\_anneal\_steps})`. The step
    counter :math:`t` is the buffer ``anneal_step``, so it is saved and restored with the
    weights. Scores are the logits at :math:`\mathbf{z} = \mu` (no sampling).

    After every epoch the collapse diagnostics (:func:`recsys_vae.diagnostics.collapse_stats`)
    are computed on up to ``diag_users`` training users and join the epoch's history. The log
    warns when fewer than 10% of the latent dimensions are active, or, once annealing is over
    (:math:`\beta_t` at ``anneal_cap``, from step ``anneal_cap * total_anneal_steps``), when
    the KL is under 1 nat per user.

    Args:
        config (MultVAEConfig): layer widths, dropout, annealing and diagnostic settings.

    Shapes:
        - loss: ``rows`` :math:`[B, |\mathcal{I}|]` -> named scalars ``nll``, ``beta_kl``
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "multvae"
    config_class = MultVAEConfig
    variational = True

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        super().build(train, dataset)
        self.register_buffer("anneal_step", torch.zeros((), dtype=torch.long))
        self.last_stats: CollapseStats | None = None

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.anneal_step.zero_()

    @property
    def beta(self) -> float:
        """The KL weight :math:`\\beta_t` of the next training step."""
        cfg = self.config
        if cfg.total_anneal_steps == 0:
            return float(cfg.anneal_cap)
        return min(float(cfg.anneal_cap), int(self.anneal_step) / cfg.total_anneal_steps)

    def prior_variance(self) -> Tensor | None:
        """Prior variances per latent dimension; None is the standard normal prior."""
        return None

    def kl(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """Mean over the batch of the KL summed over dimensions."""
        return gaussian_kl(mu, logvar, self.prior_variance()).sum(dim=1).mean()

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        rows = batch["rows"]
        mu, logvar = self.encode(rows, dropout=self.training)
        z = mu
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        beta = self.beta
        terms = {
            "nll": self.multinomial_nll(self.decode(z), rows),
            "beta_kl": beta * self.kl(mu, logvar),
        }
        if self.config.l2 > 0:
            terms["reg"] = self.config.l2 * self._penalty()
        if self.training:
            self.anneal_step += 1
        return terms

    # -- diagnostics --------------------------------------------------------------------------
    def _diag_users(self, limit: int) -> np.ndarray:
        active = np.flatnonzero(np.diff(self.train_matrix.indptr) > 0)
        if len(active) <= limit:
            return active
        return active[np.linspace(0, len(active) - 1, limit).round().astype(np.int64)]

    def collapse_stats(self, users: np.ndarray | None = None) -> CollapseStats:
        """The collapse panel on ``users`` (default: the ``diag_users`` evenly spaced ones)."""
        self.check_fitted()
        if users is None:
            users = self._diag_users(self.config.diag_users)
        mu, logvar = self._codes(np.asarray(users, dtype=np.int64))
        cfg = self.config
        return collapse_stats(
            mu,
            logvar,
            self.prior_variance(),
            threshold=cfg.active_threshold,
            eps=cfg.collapse_eps,
            delta=cfg.collapse_delta,
        )

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        users = self._diag_users(self.config.diag_users)
        if len(users) < 2:  # the panel's variances over users need two of them
            self.last_stats = None
            return {"beta": self.beta}
        stats = self.collapse_stats(users)
        self.last_stats = stats
        out = {"beta": self.beta, **stats.scalars()}
        k = stats.latent_dim
        # annealing is over once beta has reached the cap, at step anneal_cap * T (not T:
        # with the paper's cap 0.2 and T = 200000, beta is flat from step 40000 on)
        annealed = self.beta >= self.config.anneal_cap
        if stats.active_units < 0.1 * k:
            self._flag(
                "collapse",
                "%s epoch %d: posterior collapse: %d of %d latent dimensions active",
                self.name,
                epoch,
                stats.active_units,
                k,
            )
        elif annealed and stats.kl_total < 1.0:
            self._flag(
                "kl",
                "%s epoch %d: KL is %.3f nats per user after annealing (collapse?)",
                self.name,
                epoch,
                stats.kl_total,
            )
        return out

    def _flag(self, kind: str, message: str, *args: object) -> None:
        """A warning the first time ``kind`` is seen in this model's training, then an info
        line per epoch: the condition is often a phase of early training, and one warning
        per epoch buries the rest of the log (the collapse report plots every epoch)."""
        flagged = self.__dict__.setdefault("_flagged", set())
        if kind in flagged:
            log.info(message, *args)
            return
        flagged.add(kind)
        log.warning(message + " (later epochs are logged at INFO)", *args)

    def write_artifacts(self, run_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """Writes ``collapse_report.html`` (plots embedded), ``collapse.png``, ``collapse.json``."""
        from recsys_vae.report import write_collapse_report

        users = self._diag_users(self.config.diag_users)
        if len(users) < 2:
            log.warning(
                "%s: no collapse report: the diagnostics need at least 2 training users with "
                "items, and there are %d",
                self.name,
                len(users),
            )
            return []
        stats = self.collapse_stats(users)
        extra = self._report_extra(stats)
        return write_collapse_report(Path(run_dir), self.name, history, stats, extra)

    def _report_extra(self, stats: CollapseStats) -> dict[str, object]:
        return {}


class ARDVAE(MultVAE):
    r"""Mult-VAE with an automatic-relevance-determination prior (Saha, Joshi, Whitaker,
    `arXiv:2501.10901 <https://arxiv.org/abs/2501.10901>`_), adapted to the multinomial VAE.

    The prior is :math:`p(\mathbf{z}) = \prod_l \mathcal{N}(z_l; 0, v_l)`. Its variances are
    re-estimated after every epoch by empirical Bayes (the posterior mean of the Gamma
    hyper-prior with :math:`a_0 = b_0 = 0`) from :math:`N` training users' codes,

    .. math::
        v_l = \frac1N \sum_n \mathbb{E}_{q}[z_{n,l}^2]
            = \frac1N \sum_n \big(\mu_{n,l}^2 + \sigma_{n,l}^2\big),

    the second moment of the sampled codes in closed form, held constant during the next epoch
    (the buffer ``prior_var``, so checkpoints carry it). The training loss is Mult-VAE's with
    the KL against this prior,

    .. math::
        \mathrm{KL}_l = \tfrac12\Big(\frac{\mu_l^2 + \sigma_l^2}{v_l} - 1 - \log\sigma_l^2
            + \log v_l\Big).

    An axis the data does not use keeps its means near zero, so
    :math:`\mathrm{Var}_u(\mu_{u,l}) / v_l \approx 0`; a used axis has a ratio near 1.
    :meth:`relevant_dims` returns the axes whose ratio exceeds ``relevance_threshold``; their
    count is logged every epoch (``relevant_dims``) and in the run log.

    Args:
        config (ARDVAEConfig): Mult-VAE's settings plus ``n_stat``, ``min_prior_var`` and
            ``relevance_threshold``.
    """

    name = "ardvae"
    config_class = ARDVAEConfig

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        super().build(train, dataset)
        self.register_buffer("prior_var", torch.ones(self.config.latent_dim))
        self.register_buffer("prior_updates", torch.zeros((), dtype=torch.long))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.prior_var.fill_(1.0)
        self.prior_updates.zero_()

    def prior_variance(self) -> Tensor | None:
        return self.prior_var

    def update_prior(self) -> Tensor:
        """Re-estimate :math:`v` from up to ``n_stat`` random training users; returns it."""
        self.check_fitted()
        active = np.flatnonzero(np.diff(self.train_matrix.indptr) > 0)
        # a fresh subset each update, reproducible from the update count (resumes match)
        rng = np.random.default_rng(int(self.prior_updates))
        if len(active) > self.config.n_stat:
            active = np.sort(rng.choice(active, self.config.n_stat, replace=False))
        mu, logvar = self._codes(active)
        second = (mu.double().pow(2) + logvar.double().exp()).mean(dim=0)
        self.prior_var.copy_(second.clamp_min(self.config.min_prior_var).to(self.prior_var))
        self.prior_updates += 1
        return self.prior_var

    def relevant_dims(self, stats: CollapseStats | None = None) -> np.ndarray:
        """Indices of the axes with :math:`\\mathrm{Var}_u(\\mu_{u,l}) / v_l` above
        ``relevance_threshold``, most used first."""
        stats = stats or self.last_stats or self.collapse_stats()
        ratio = stats.usage_ratio
        keep = np.flatnonzero(ratio > self.config.relevance_threshold)
        return keep[np.argsort(-ratio[keep], kind="stable")]

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        self.update_prior()
        out = super().on_epoch_end(epoch)
        if self.last_stats is None:  # fewer than 2 training users: no panel
            return out
        relevant = self.relevant_dims(self.last_stats)
        out["relevant_dims"] = float(len(relevant))
        log.info(
            "ardvae epoch %d: %d relevant latent dimensions of %d: %s",
            epoch,
            len(relevant),
            self.config.latent_dim,
            relevant.tolist(),
        )
        return out

    def _report_extra(self, stats: CollapseStats) -> dict[str, object]:
        relevant = self.relevant_dims(stats)
        log.info(
            "ardvae: %d relevant latent dimensions of %d (Var(mu)/v > %g): %s",
            len(relevant),
            self.config.latent_dim,
            self.config.relevance_threshold,
            relevant.tolist(),
        )
        return {
            "relevant_dims": relevant.tolist(),
            "relevance_threshold": self.config.relevance_threshold,
        }
