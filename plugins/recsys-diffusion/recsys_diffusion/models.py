"""DiffRec and L-DiffRec: diffusion recommenders over users' interaction vectors.

References: Wang, Xu, Feng, Lin, He, Chua, "Diffusion Recommender Model", SIGIR 2023,
https://arxiv.org/abs/2304.04971 (reference code: github.com/YiyanXu/DiffRec, read, not copied).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError
from recsys.models.base import ModelConfig, Recommender, ScoreFn, history_rows
from recsys_diffusion.diffusion import Denoiser, GaussianDiffusion, ImportanceSampler


class DiffRecConfig(ModelConfig):
    """Hyper-parameters of :class:`DiffRec` (defaults: the reference's clean-Yelp
    configuration; the learning rate is the trainer's ``train.learning_rate``)."""

    steps: int = Field(5, gt=0)
    """Diffusion steps :math:`T` (also the number of denoiser calls at inference)."""
    noise_scale: float = Field(0.01, ge=0.0)
    """:math:`s`, the scale of the marginal variance; ``0`` turns the noise off."""
    noise_min: float = Field(0.001, gt=0.0)
    """:math:`\\alpha_{\\min}`: variance at the first step, before scaling."""
    noise_max: float = Field(0.01, gt=0.0)
    """:math:`\\alpha_{\\max}`: variance at the last step, before scaling."""
    fix_beta1: bool = True
    """Overwrite :math:`\\beta_1 := 10^{-5}` (DiffRec's "prevent overfitting" choice)."""
    hidden_dims: list[int] = Field(default_factory=lambda: [1000])
    """Hidden widths of the denoiser's input side, mirrored on its output side: ``[600, 200]``
    builds ``I+e -> 600 -> 200 -> 600 -> I``, the reference's ML-1M network (which it writes
    ``--dims [200,600]``, listing the output side)."""
    emb_size: int = Field(10, gt=0)
    """Width of the sinusoidal timestep embedding."""
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    """Input dropout of the denoiser during training."""
    norm: bool = False
    """L2-normalise the denoiser's input vector."""
    reweight: bool = True
    """Weight each step's MSE by :math:`\\mathrm{SNR}(t-1) - \\mathrm{SNR}(t)`. Every released
    reference model was trained with it; ``False`` is this plugin's extension (the reference's
    ``--reweight 0`` still parses as true, and its unweighted loss branch is broken)."""
    timestep_sampling: Literal["importance", "uniform"] = "importance"
    """Draw training steps by the loss history (``importance``) or uniformly."""
    history: int = Field(10, gt=0)
    """Losses kept per step for importance sampling."""

    @model_validator(mode="after")
    def _check(self) -> DiffRecConfig:
        if self.noise_min > self.noise_max:
            raise ValueError(
                f"noise_min ({self.noise_min}) must not exceed noise_max ({self.noise_max})"
            )
        if self.noise_scale * self.noise_max >= 1.0:
            raise ValueError(
                f"noise_scale * noise_max = {self.noise_scale * self.noise_max} must be < 1 "
                "(it is the marginal variance 1 - alpha_bar_T)"
            )
        if not self.hidden_dims or any(d <= 0 for d in self.hidden_dims):
            raise ValueError(f"hidden_dims must be positive widths, got {self.hidden_dims}")
        return self


class DiffRec(Recommender):
    r"""DiffRec from `"Diffusion Recommender Model" <https://arxiv.org/abs/2304.04971>`_
    (Wang et al., SIGIR 2023): Gaussian diffusion on a user's interaction vector
    :math:`\mathbf{x}_0 \in \{0,1\}^{|\mathcal{I}|}`.

    Training draws a step :math:`t \sim p` (importance sampling by loss history, see
    :class:`~recsys_diffusion.diffusion.ImportanceSampler`), noises the row with the tiny
    linear-variance schedule and regresses the clean row:

    .. math::
        \mathcal{L} = \frac{1}{B}\sum_{u} \frac{w_{t_u}}{T\,p_{t_u}}\,
        \frac{1}{|\mathcal{I}|}\left\lVert \hat{\mathbf{x}}_\theta(\mathbf{x}_{t_u}, t_u)
        - \mathbf{x}_0^u \right\rVert^2, \qquad
        w_t = \mathrm{SNR}(t-1) - \mathrm{SNR}(t)\ (w = 1 \text{ at the first step})

    Inference starts from the history itself, :math:`\mathbf{x}_T := \mathbf{x}_0` (no added
    noise), and runs the :math:`T` deterministic reverse steps
    :math:`\mathbf{x}_{t-1} = c_1(t)\,\hat{\mathbf{x}}_\theta(\mathbf{x}_t, t) +
    c_2(t)\,\mathbf{x}_t`; the final mean is the score vector. It is a fold-in model: a user
    is scored from a history row, with no per-user parameter.

    The loss is divided by :math:`T p_t`, as in the reference (whose ``pt`` already carries the
    factor :math:`T`), so under uniform sampling the divisor is 1 and the loss is the weighted
    MSE itself.

    Shapes:
        - loss: batch ``rows`` :math:`[B, |\mathcal{I}|]`
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "diffrec"
    config_class = DiffRecConfig
    batch_kind = "user_rows"
    fold_in = True

    # -- structure ------------------------------------------------------------------------
    def latent_dim(self) -> int:
        """Width of the vectors the diffusion runs on (items here, latents in L-DiffRec)."""
        return int(self.n_items)

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        c = self.config
        self.diffusion = GaussianDiffusion(
            c.steps, c.noise_scale, c.noise_min, c.noise_max, c.fix_beta1
        )
        self.sampler = ImportanceSampler(c.steps, c.history)
        self.denoiser = Denoiser(self.latent_dim(), list(c.hidden_dims), c.emb_size, c.dropout)

    def reset_parameters(self) -> None:
        self.denoiser.reset_parameters()
        self.sampler.loss_history.zero_()
        self.sampler.loss_count.zero_()

    @property
    def device(self) -> torch.device:
        return self.denoiser.time_proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (float32, or float64 after ``model.double()``)."""
        return self.denoiser.time_proj.weight.dtype

    # -- training -------------------------------------------------------------------------
    def diffusion_loss(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        r"""Per-example importance-corrected losses ``[B]`` and the denoiser's
        :math:`\hat{\mathbf{x}}_0` ``[B, d]`` for clean vectors ``x0``."""
        c = self.config
        if c.timestep_sampling == "importance":
            t, pt = self.sampler.sample(len(x0), x0.device)
        else:
            t = torch.randint(0, c.steps, (len(x0),), device=x0.device)
            pt = torch.full((len(x0),), 1.0 / c.steps, device=x0.device)
        x_t = self.diffusion.q_sample(x0, t)
        x0_hat = self.denoiser(x_t, t)
        mse = (x0_hat - x0).pow(2).mean(dim=1)
        weight = self.diffusion.snr_weight.index_select(0, t) if c.reweight else 1.0
        per_example = weight * mse
        if c.timestep_sampling == "importance" and self.training:
            self.sampler.update(t, per_example)
        return per_example / (c.steps * pt), x0_hat

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        per_example, _ = self.diffusion_loss(batch["rows"].to(self.dtype))
        return {"diffusion": per_example.mean()}

    # -- inference ------------------------------------------------------------------------
    def reverse(
        self, x: Tensor, n_calls: int | None = None, input_weight_t: Tensor | None = None
    ) -> Tensor:
        r"""Run the reverse chain from :math:`\mathbf{x}_T := ` ``x`` for ``n_calls`` denoiser
        calls (default :math:`T`) and return the last call's :math:`\hat{\mathbf{x}}_0`.

        With all :math:`T` calls this equals the final posterior mean (:math:`c_1 = 1,
        c_2 = 0` at the first step); ``n_calls = 1`` is the "free" one-call baseline
        :math:`\hat{\mathbf{x}}_\theta(\mathbf{x}_0, T)`. Input dropout is off.
        """
        steps = self.config.steps
        n_calls = steps if n_calls is None else n_calls
        if not 1 <= n_calls <= steps:
            raise ValueError(f"n_calls must be in 1..{steps}, got {n_calls}")
        for k in range(n_calls):
            t = torch.full((x.shape[0],), steps - 1 - k, dtype=torch.long, device=x.device)
            x0_hat = self.denoiser(x, t, drop=False, input_weight_t=input_weight_t)
            if k == n_calls - 1:
                return x0_hat
            if x.layout == torch.sparse_csr:  # a sparse history: only the first call takes it
                x = x.to_dense()
            x = self.diffusion.posterior_mean(x, x0_hat, t)
        raise AssertionError("unreachable")

    def encode(self, rows: Tensor) -> Tensor:
        """The vector the diffusion starts from (the row itself here)."""
        return rows

    def decode(self, z: Tensor) -> Tensor:
        """Item scores from a diffusion output (identity here)."""
        return z

    def scorer(self, history: sp.csr_array | None = None, n_calls: int | None = None) -> ScoreFn:
        """Scores from each user's ``history`` row (default: training rows) after
        ``n_calls`` reverse steps (default :math:`T`)."""
        self.check_fitted()
        history = self.history_matrix(history)

        # the history enters the first denoiser call as a sparse matrix (L-DiffRec encodes it)
        sparse = type(self).encode is DiffRec.encode
        weight_t = self.denoiser.input_weight_t() if sparse else None

        @torch.no_grad()
        def score(users: Tensor) -> Tensor:
            rows = history_rows(history, users, self.device, sparse=sparse).to(self.dtype)
            return self.decode(self.reverse(self.encode(rows), n_calls, weight_t))

        return score

    def representations(self, history: sp.csr_array | None = None) -> dict[str, Tensor]:
        # the output layer has one row per item: the item side of the final linear map
        return {"item_output": self.denoiser.layers[-1].weight.detach()}


class LDiffRecConfig(DiffRecConfig):
    """Hyper-parameters of :class:`LDiffRec`.

    Defaults: the autoencoder and loss settings of the reference's L-DiffRec runs (latent
    width 300 and a [300] latent denoiser, :math:`\\lambda = 0.03` as on Yelp and ML-1M, decayed
    per epoch over 500 epochs to 0.005, KL weight up to 0.3 over 200 batches, encoder dropout
    0.1, 2 item clusters, no :math:`\\beta_1` override). The diffusion schedule (``steps`` 5,
    ``noise_scale`` 0.01, ``noise_min`` 1e-3, ``noise_max`` 1e-2) is inherited from
    :class:`DiffRecConfig` (DiffRec's clean-Yelp setting) and is none of L-DiffRec's released
    schedules: Yelp uses 5 / 0.01 / 5e-3 / 1e-2, ML-1M 40 / 5e-3 / 5e-3 / 2e-2 and
    Amazon-book 5 / 0.5 / 1e-3 / 5e-3 (steps / scale / min / max); set them for a reproduction.
    """

    fix_beta1: bool = False
    """L-DiffRec keeps the schedule's own :math:`\\beta_1`."""
    hidden_dims: list[int] = Field(default_factory=lambda: [300])
    """Hidden widths of the latent denoiser."""
    n_clusters: int = Field(2, gt=0)
    """Item clusters, each with its own encoder."""
    latent_size: int = Field(300, gt=0)
    """Total latent width, shared out to the clusters in proportion to their sizes."""
    cluster_dim: int = Field(32, gt=0)
    """Width of the item factors that k-means clusters (truncated SVD of the item columns)."""
    cluster_seed: int = 0
    """Seed of k-means' initial centres (clustering is a function of the data and this)."""
    encoder_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout on the encoder's input row during training."""
    diffusion_weight: float = Field(0.03, gt=0.0)
    """:math:`\\lambda`, the starting weight of the latent diffusion loss."""
    diffusion_weight_floor: float = Field(0.005, ge=0.0)
    """Lower bound of the decayed :math:`\\lambda_t`."""
    anneal_epochs: int = Field(500, gt=0)
    """Training epochs over which :math:`\\lambda_t` decays linearly to its floor, as in the
    reference (its ``anneal_steps`` = 500, a counter incremented once per epoch): at 0-based
    epoch :math:`e`, :math:`\\lambda_e = \\max((1 - e/N_\\lambda)\\lambda, \\lambda_{\\min})`."""
    anneal_batches: int | None = Field(None, gt=0)
    """If set, count training batches instead of epochs: :math:`\\lambda_t` reaches its floor
    after this many batches whatever the data size (this plugin's earlier schedule used 2000),
    so the schedule measured in epochs shrinks as the data grows; ``anneal_epochs`` is then
    ignored. None (default): the reference's per-epoch schedule."""
    kl_cap: float = Field(0.3, ge=0.0)
    """Maximum KL weight :math:`a_t`."""
    kl_anneal_batches: int = Field(200, gt=0)
    """Batches over which :math:`a_t` grows linearly to ``kl_cap``."""
    denoiser_learning_rate: float | None = Field(None, gt=0)
    """Learning rate of the latent denoiser, the reference's ``lr2``; the autoencoder's
    (``lr1``) is ``train.learning_rate``. The reference's runs: Amazon-book and Yelp
    5e-4 / 1e-4, ML-1M 1e-3 / 5e-4. None (default): ``train.learning_rate`` for both."""

    @model_validator(mode="after")
    def _check_latent(self) -> LDiffRecConfig:
        # every cluster's encoder needs at least one latent unit
        if self.latent_size < self.n_clusters:
            raise ValueError(
                f"model.latent_size ({self.latent_size}) must be at least model.n_clusters "
                f"({self.n_clusters}): every cluster gets one latent unit or more"
            )
        # a floor above the start would make the "decay" a constant at the floor
        if self.diffusion_weight_floor > self.diffusion_weight:
            raise ValueError(
                f"model.diffusion_weight_floor ({self.diffusion_weight_floor}) must not exceed "
                f"model.diffusion_weight ({self.diffusion_weight}): lambda_t decays from "
                "diffusion_weight down to the floor"
            )
        return self


def kmeans(x: Tensor, k: int, seed: int, iters: int = 50) -> Tensor:
    """Cluster labels ``[n]`` of the rows of ``x`` by Lloyd's k-means (k-means++ start with a
    seeded generator; every cluster non-empty when ``n >= k``)."""
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    k = min(k, n)
    centres = x[torch.randint(0, n, (1,), generator=gen)]
    for _ in range(1, k):
        d2 = torch.cdist(x, centres).min(dim=1).values.pow(2)
        p = d2 / d2.sum() if d2.sum() > 0 else torch.full((n,), 1.0 / n)
        centres = torch.cat([centres, x[torch.multinomial(p, 1, generator=gen)]])
    labels = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        new = torch.cdist(x, centres).argmin(dim=1)
        # an emptied cluster takes the point farthest from its centre
        for c in range(k):
            if not (new == c).any():
                far = torch.cdist(x, centres).gather(1, new[:, None]).squeeze(1).argmax()
                new[far] = c
        if torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros(k, x.shape[1]).index_add_(0, labels, x)
        centres = sums / torch.bincount(labels, minlength=k).clamp_min(1)[:, None].float()
    return labels


class LDiffRec(DiffRec):
    r"""L-DiffRec, the latent variant of DiffRec (same paper): items are clustered, each
    cluster's slice of the interaction row is encoded to a Gaussian latent block, the diffusion
    runs on the concatenated latent :math:`\mathbf{z}`, and a linear decoder maps the denoised
    latent back to item scores.

    Cluster :math:`c`'s encoder is one linear layer followed by tanh, as in the reference, so
    the posterior's mean and log-variance both lie in :math:`(-1, 1)`:

    .. math::
        [\boldsymbol\mu_c \Vert \log\boldsymbol\sigma_c^2] = \tanh(\mathbf{W}_c\,
        \mathrm{drop}(\mathbf{x})_{\mathcal{I}_c} + \mathbf{b}_c), \qquad
        \mathbf{z} = \boldsymbol\mu + \boldsymbol\sigma \odot \boldsymbol\epsilon

    .. math::
        \mathcal{L} = \lambda_t\,\mathcal{L}_{\text{diff}}(\mathbf{z})
        - \frac{1}{B}\sum_u \mathbf{x}_u^\top \log\operatorname{softmax}
        \big(\mathrm{dec}(\hat{\mathbf{z}}_0)\big)
        + a_t\,\mathrm{KL}\big(q(\mathbf{z}\mid\mathbf{x}) \,\Vert\, \mathcal{N}(0, I)\big)

    with :math:`\lambda_e = \max((1 - e/N_\lambda)\lambda, \lambda_{\min})` at 0-based training
    epoch :math:`e` (``anneal_epochs``; the reference's schedule, its counter incremented once
    per epoch) and :math:`a_n = \min(a_{\max}, n / N_a)` after :math:`n` training batches
    (``kl_anneal_batches``; per batch in the reference too). The epoch count is a buffer,
    advanced in :meth:`on_epoch_end`, so checkpoints and resumed runs carry it. Setting
    ``anneal_batches`` counts :math:`\lambda`'s decay in batches instead (an option, not the
    reference: with a fixed batch count the decay is faster, in epochs, the larger the data).

    Departures from the reference (github.com/YiyanXu/DiffRec, ``L-DiffRec``):

    - Items are clustered by k-means on a truncated SVD of the training matrix's item
      columns, not on pre-trained LightGCN item embeddings, so the model needs nothing but
      its training data.
    - By default one learning rate (``train.learning_rate``) for the autoencoder and the
      latent denoiser; the reference steps two AdamW optimisers, ``lr1`` for the autoencoder
      and ``lr2`` for the denoiser (Amazon-book and Yelp 5e-4 / 1e-4, ML-1M 1e-3 / 5e-4):
      set ``denoiser_learning_rate`` for ``lr2`` (one Adam, two parameter groups; with zero
      weight decay, as in the reference's runs, AdamW and Adam coincide).
    - The reconstruction target is the clean row :math:`\mathbf{x}`; the reference scores the
      decoder against its encoder's input after dropout (about 10% of positives removed, the
      rest scaled by 1/0.9), which looks accidental.
    - Biases start from :math:`\mathcal{N}(0, 10^{-6})` (the reference: 0), and latent widths
      are shared out by largest remainder (the reference: floors, remainder to the last
      cluster).

    Scoring encodes to the mean (no sampling), runs the :math:`T` reverse steps in latent
    space and decodes.

    Shapes:
        - loss: batch ``rows`` :math:`[B, |\mathcal{I}|]`
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "ldiffrec"
    config_class = LDiffRecConfig

    def latent_dim(self) -> int:
        return int(self.config.latent_size)

    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        c = self.config
        labels = self._cluster_items(train)
        sizes = torch.bincount(labels, minlength=int(labels.max()) + 1)
        # largest-remainder shares of the latent width, at least one unit per cluster
        exact = sizes.double() / sizes.sum() * c.latent_size
        widths = exact.floor().long().clamp_min(1)
        for i in torch.argsort(exact - exact.floor(), descending=True).tolist():
            if widths.sum() >= c.latent_size:
                break
            widths[i] += 1
        if int(widths.sum()) != c.latent_size:
            raise ConfigError(
                f"model.latent_size={c.latent_size} is smaller than the {len(sizes)} clusters"
            )
        self.register_buffer("item_cluster", labels)
        self.encoders = nn.ModuleList(
            nn.Linear(int(n), 2 * int(w)) for n, w in zip(sizes, widths, strict=True)
        )
        self.decoder = nn.Linear(c.latent_size, self.n_items)
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        super().build(train, dataset)

    def parameter_groups(self) -> list[dict[str, Any]] | None:
        """The autoencoder at ``train.learning_rate`` and the latent denoiser at
        ``denoiser_learning_rate`` (the reference's ``lr1`` and ``lr2``), when that is set."""
        rate = self.config.denoiser_learning_rate
        if rate is None:
            return None
        denoiser = list(self.denoiser.parameters())
        inside = {id(p) for p in denoiser}
        autoencoder = [p for p in self.parameters() if id(p) not in inside]
        return [{"params": autoencoder}, {"params": denoiser, "lr": rate}]

    def _cluster_items(self, train: sp.csr_array) -> Tensor:
        c = self.config
        k = min(c.cluster_dim, min(train.shape))
        if c.n_clusters == 1 or self.n_items < 2:
            return torch.zeros(self.n_items, dtype=torch.long)
        coo = sp.coo_array(train, dtype=np.float32)
        matrix = torch.sparse_coo_tensor(
            np.vstack([coo.row, coo.col]).astype(np.int64), coo.data, train.shape
        )
        # a fixed seed keeps the random projection (and so the clusters) a function of the data
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.cluster_seed)
            _, s, v = torch.svd_lowrank(matrix, q=k, niter=4)
        factors = nn.functional.normalize(v * s, dim=1)
        return kmeans(factors, c.n_clusters, c.cluster_seed)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for layer in [*self.encoders, self.decoder]:
            fan_out, fan_in = layer.weight.shape
            nn.init.normal_(layer.weight, std=math.sqrt(2.0 / (fan_in + fan_out)))
            nn.init.normal_(layer.bias, std=0.001)
        self.batches_seen.zero_()
        self.epochs_seen.zero_()

    def posterior(self, rows: Tensor, drop: bool = False) -> tuple[Tensor, Tensor]:
        r"""Mean and log-variance ``[B, latent_size]`` of :math:`q(\mathbf{z} \mid \mathbf{x})`
        for rows ``[B, |I|]``, both in :math:`(-1, 1)` (tanh); ``drop`` applies the encoder's
        input dropout."""
        if drop and self.config.encoder_dropout > 0:
            rows = nn.functional.dropout(rows, self.config.encoder_dropout)
        mus, logvars = [], []
        for c, encoder in enumerate(self.encoders):
            idx = torch.nonzero(self.item_cluster == c).squeeze(1)
            mu, logvar = torch.tanh(encoder(rows.index_select(1, idx))).chunk(2, dim=1)
            mus.append(mu)
            logvars.append(logvar)
        return torch.cat(mus, dim=1), torch.cat(logvars, dim=1)

    def encode(self, rows: Tensor) -> Tensor:
        return self.posterior(rows)[0]

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    @property
    def diffusion_weight_now(self) -> float:
        r""":math:`\lambda_t`, the weight of the diffusion loss in the next training batch."""
        c = self.config
        if c.anneal_batches is not None:
            progress = int(self.batches_seen) / c.anneal_batches
        else:
            progress = int(self.epochs_seen) / c.anneal_epochs
        return max((1.0 - progress) * c.diffusion_weight, c.diffusion_weight_floor)

    @property
    def kl_weight_now(self) -> float:
        """:math:`a_t`, the weight of the KL term in the next training batch."""
        c = self.config
        return min(c.kl_cap, int(self.batches_seen) / c.kl_anneal_batches)

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Advance the epoch count of :math:`\\lambda`'s schedule (called by the trainer after
        every training epoch). Reports ``diffusion_weight`` and ``kl_weight`` as they stand at the
        epoch's end, before the count advances (with the per-epoch schedule, the
        :math:`\\lambda` every batch of the epoch trained with)."""
        out = {"diffusion_weight": self.diffusion_weight_now, "kl_weight": self.kl_weight_now}
        self.epochs_seen += 1
        return out

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        rows = batch["rows"].to(self.dtype)
        mu, logvar = self.posterior(rows, drop=self.training)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        per_example, z0_hat = self.diffusion_loss(z)
        lam, anneal = self.diffusion_weight_now, self.kl_weight_now
        if self.training:
            self.batches_seen += 1
        log_p = nn.functional.log_softmax(self.decode(z0_hat), dim=1)
        recon = -(log_p * rows).sum(dim=1).mean()
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()
        return {"diffusion": lam * per_example.mean(), "recon": recon, "kl": anneal * kl}

    def representations(self, history: sp.csr_array | None = None) -> dict[str, Tensor]:
        return {"item_decoder": self.decoder.weight.detach()}
