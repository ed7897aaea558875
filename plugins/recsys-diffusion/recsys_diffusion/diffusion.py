"""Gaussian diffusion on interaction vectors, as in DiffRec: schedule, sampler, denoiser.

Three building blocks shared by :class:`~recsys_diffusion.models.DiffRec`, its latent variant
and the distilled student:

- :class:`GaussianDiffusion`: the "linear-variance" noise schedule and every coefficient derived
  from it (forward sampling, posterior mean, SNR reweighting), held as buffers;
- :class:`ImportanceSampler`: timestep sampling by the recent loss history, its state in buffers
  so a resumed run draws exactly what an uninterrupted one would;
- :class:`Denoiser`: the MLP :math:`\\hat{\\mathbf{x}}_\\theta(\\mathbf{x}_t, t)` with a sinusoidal
  timestep embedding, predicting the clean vector.

Steps are indexed by code convention ``t = 0..T-1`` (the paper's ``t = 1..T``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import Tensor, nn


def linear_variance_betas(
    steps: int,
    noise_scale: float,
    noise_min: float,
    noise_max: float,
    max_beta: float = 0.999,
) -> np.ndarray:
    r"""Betas of DiffRec's "linear-var" schedule, in float64.

    The marginal variance grows linearly over the paper's steps :math:`t = 1..T`:

    .. math::
        1 - \bar\alpha_t = s\left[\alpha_{\min} + \tfrac{t-1}{T-1}(\alpha_{\max}
        - \alpha_{\min})\right], \qquad
        \beta_1 = 1 - \bar\alpha_1, \quad
        \beta_t = \min\!\left(1 - \bar\alpha_t / \bar\alpha_{t-1},\ \beta_{\max}\right)

    with :math:`s` = ``noise_scale``. For ``steps == 1`` the single variance is
    :math:`s\,\alpha_{\min}`.
    """
    variance = noise_scale * np.linspace(noise_min, noise_max, steps, dtype=np.float64)
    alpha_bar = 1.0 - variance
    betas = np.empty(steps, dtype=np.float64)
    betas[0] = 1.0 - alpha_bar[0]
    betas[1:] = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)
    return betas


class GaussianDiffusion(nn.Module):
    r"""The forward process :math:`q(\mathbf{x}_t\mid\mathbf{x}_0)` and the x0-parameterised
    reverse mean of DiffRec (Wang et al., SIGIR 2023, https://arxiv.org/abs/2304.04971).

    .. math::
        q(\mathbf{x}_t \mid \mathbf{x}_0) = \mathcal{N}\!\left(\sqrt{\bar\alpha_t}\,\mathbf{x}_0,
        (1-\bar\alpha_t)\mathbf{I}\right), \qquad
        \bar\alpha_t = \prod_{s \le t}(1 - \beta_s)

    .. math::
        \boldsymbol\mu(\mathbf{x}_t, \hat{\mathbf{x}}_0, t) =
        \underbrace{\frac{\beta_t\sqrt{\bar\alpha_{t-1}}}{1-\bar\alpha_t}}_{c_1(t)}
        \hat{\mathbf{x}}_0 +
        \underbrace{\frac{(1-\bar\alpha_{t-1})\sqrt{1-\beta_t}}{1-\bar\alpha_t}}_{c_2(t)}
        \mathbf{x}_t

    Training weights (``reweight``) are :math:`w_t = \mathrm{SNR}(t-1) - \mathrm{SNR}(t)` with
    :math:`\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)`, and :math:`w = 1` at the first
    step (where :math:`\mathrm{SNR}(0)` is infinite).

    Args:
        steps (int): :math:`T`.
        noise_scale (float): :math:`s`; ``0`` makes :math:`q` the identity.
        noise_min (float), noise_max (float): :math:`\alpha_{\min}, \alpha_{\max}`.
        fix_beta1 (bool): overwrite :math:`\beta_1 := 10^{-5}` after building the schedule
            (DiffRec does; L-DiffRec does not). (default: ``True``)

    Buffers (float32, length :math:`T`, index ``t = 0..T-1``): ``betas``, ``alphas_cumprod``,
    ``alphas_cumprod_prev``, ``coef_x0`` (:math:`c_1`), ``coef_xt`` (:math:`c_2`),
    ``snr_weight``. They are functions of the config, so they are not saved in checkpoints.
    """

    def __init__(
        self,
        steps: int,
        noise_scale: float,
        noise_min: float,
        noise_max: float,
        fix_beta1: bool = True,
    ) -> None:
        super().__init__()
        self.steps = int(steps)
        self.noise_scale = float(noise_scale)
        if noise_scale > 0:
            betas = linear_variance_betas(steps, noise_scale, noise_min, noise_max)
            if fix_beta1:
                betas[0] = 1e-5
        else:
            betas = np.zeros(steps, dtype=np.float64)
        alphas_cumprod = np.cumprod(1.0 - betas)
        prev = np.concatenate(([1.0], alphas_cumprod[:-1]))
        one_minus = 1.0 - alphas_cumprod
        with np.errstate(divide="ignore", invalid="ignore"):
            coef_x0 = np.where(one_minus > 0, betas * np.sqrt(prev) / one_minus, 1.0)
            coef_xt = np.where(one_minus > 0, (1.0 - prev) * np.sqrt(1.0 - betas) / one_minus, 0.0)
            snr = np.where(one_minus > 0, alphas_cumprod / one_minus, np.inf)
            snr_prev = np.concatenate(([np.inf], snr[:-1]))
            weight = snr_prev - snr
        weight[0] = 1.0
        weight[~np.isfinite(weight)] = 1.0  # noise_scale == 0: every step is the identity
        for name, value in (
            ("betas", betas),
            ("alphas_cumprod", alphas_cumprod),
            ("alphas_cumprod_prev", prev),
            ("coef_x0", coef_x0),
            ("coef_xt", coef_xt),
            ("snr_weight", weight),
        ):
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32), persistent=False)

    def extra_repr(self) -> str:
        return f"steps={self.steps}, noise_scale={self.noise_scale}"

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        r""":math:`\mathbf{x}_t = \sqrt{\bar\alpha_t}\mathbf{x}_0 + \sqrt{1-\bar\alpha_t}
        \boldsymbol\epsilon`; ``t`` is ``[B]`` code steps. Exactly ``x0`` when
        ``noise_scale == 0``."""
        if self.noise_scale == 0:
            return x0
        if noise is None:
            noise = torch.randn_like(x0)
        ab = self.alphas_cumprod.index_select(0, t).unsqueeze(1)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise

    def posterior_mean(self, x_t: Tensor, x0_hat: Tensor, t: Tensor) -> Tensor:
        r""":math:`c_1(t)\hat{\mathbf{x}}_0 + c_2(t)\mathbf{x}_t` for ``[B]`` code steps
        ``t``."""
        c1 = self.coef_x0.index_select(0, t).unsqueeze(1)
        c2 = self.coef_xt.index_select(0, t).unsqueeze(1)
        return c1 * x0_hat + c2 * x_t

    def x0_weight_from(self, k: Tensor) -> Tensor:
        r"""Weight :math:`a_k = \prod_{j=k}^{T-1} c_2(j)` of the start vector in the state
        reached after running the reverse chain from step ``T-1`` down to step ``k``
        (state index ``k = 0..T``; :math:`a_T = 1`, and :math:`a_0 = 0` since
        :math:`c_2(0) = 0`).

        If every denoiser call returned the same :math:`\hat{\mathbf{x}}_0`, the state would be
        exactly :math:`a_k\mathbf{x}_0 + (1-a_k)\hat{\mathbf{x}}_0`; the distilled student
        uses this as its skip connection.
        """
        # suffix products of c2, with a 1 appended for state index T
        suffix = torch.flip(torch.cumprod(torch.flip(self.coef_xt, [0]), 0), [0])
        table = torch.cat([suffix, suffix.new_ones(1)])
        return table.index_select(0, k)


class ImportanceSampler(nn.Module):
    r"""Timestep sampler weighted by the recent training loss (DiffRec, after Nichol &
    Dhariwal 2021).

    Until every step has ``history`` recorded losses, :math:`t` is uniform. Afterwards

    .. math::
        p_t \propto \sqrt{\tfrac{1}{H}\textstyle\sum_{h=1}^{H} L_{t,h}^2}, \qquad
        p_t \leftarrow (1-\epsilon)\,p_t + \epsilon / T

    with :math:`\epsilon` = ``uniform_mix`` (0.001). The loss of an example with step
    :math:`t` is divided by :math:`T p_t`, so its expectation is unchanged.

    Buffers ``loss_history`` ``[T, H]`` and ``loss_count`` ``[T]`` hold the state; they are
    saved in checkpoints.
    """

    def __init__(self, steps: int, history: int = 10, uniform_mix: float = 0.001) -> None:
        super().__init__()
        self.steps, self.history, self.uniform_mix = int(steps), int(history), float(uniform_mix)
        self.register_buffer("loss_history", torch.zeros(steps, history))
        self.register_buffer("loss_count", torch.zeros(steps, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"steps={self.steps}, history={self.history}"

    def warmed_up(self) -> bool:
        return bool((self.loss_count >= self.history).all())

    def weights(self) -> Tensor:
        """The sampling distribution :math:`p` over the ``T`` steps."""
        if not self.warmed_up():
            return torch.full((self.steps,), 1.0 / self.steps, device=self.loss_history.device)
        w = self.loss_history.pow(2).mean(dim=1).sqrt()
        w = w / w.sum()
        return w * (1.0 - self.uniform_mix) + self.uniform_mix / self.steps

    def sample(self, batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(t, p_t)``: ``[B]`` code steps and their probabilities."""
        p = self.weights().to(device)
        t = torch.multinomial(p, batch_size, replacement=True)
        return t, p.index_select(0, t)

    @torch.no_grad()
    def update(self, t: Tensor, losses: Tensor) -> None:
        """Append each example's loss to its step's history, keeping the last ``H`` per step
        (in batch order)."""
        t, losses = t.detach(), losses.detach().float()
        for step in torch.unique(t).tolist():  # at most T distinct steps per batch
            new = losses[t == step][-self.history :]
            n = int(self.loss_count[step])
            kept = torch.cat([self.loss_history[step, :n], new])[-self.history :]
            self.loss_history[step, : len(kept)] = kept
            self.loss_count[step] = len(kept)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    r"""Sinusoidal embedding of integer steps ``t`` ``[B]`` -> ``[B, dim]``:
    :math:`[\cos(t\omega_j), \sin(t\omega_j)]` with
    :math:`\omega_j = P^{-j/(d/2)}`, :math:`j < d/2`, zero-padded when ``dim`` is odd."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float().unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(len(t), 1)], dim=1)
    return emb


class Denoiser(nn.Module):
    r"""DiffRec's MLP :math:`\hat{\mathbf{x}}_\theta(\mathbf{x}_t, t)`.

    .. math::
        \mathbf{h}_0 = [\,\mathrm{drop}(\mathbf{x}_t)\ \Vert\ \mathbf{W}_e\,
        \mathrm{emb}(t) + \mathbf{b}_e\,], \qquad
        \mathbf{h}_{l+1} = \tanh(\mathbf{W}_l\mathbf{h}_l + \mathbf{b}_l), \qquad
        \hat{\mathbf{x}}_0 = \mathbf{W}_L\mathbf{h}_L + \mathbf{b}_L

    The widths go ``in_dim + emb_size -> hidden_dims[0] -> ... -> hidden_dims[-1]`` and back
    through the reversed hidden widths to ``in_dim`` (so ``[600, 200]`` gives
    ``I+e -> 600 -> 200 -> 600 -> I``); tanh everywhere except the output layer.
    Weights are initialised :math:`\mathcal{N}(0, 2/(n_{in}+n_{out}))`, biases
    :math:`\mathcal{N}(0, 10^{-6})`.

    Shapes:
        - input: x ``[B, in_dim]``, t ``[B]`` (long)
        - output: ``[B, in_dim]``
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: list[int],
        emb_size: int = 10,
        dropout: float = 0.5,
        norm: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim, self.emb_size, self.norm = in_dim, emb_size, norm
        self.time_proj = nn.Linear(emb_size, emb_size)
        widths = [in_dim + emb_size, *hidden_dims, *hidden_dims[-2::-1], in_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in [self.time_proj, *self.layers]:
            fan_out, fan_in = layer.weight.shape
            nn.init.normal_(layer.weight, std=math.sqrt(2.0 / (fan_in + fan_out)))
            nn.init.normal_(layer.bias, std=0.001)

    @torch.no_grad()
    def input_weight_t(self) -> Tensor:
        """The first layer's item block, transposed and contiguous ``[in_dim, hidden]``: what a
        sparse input is multiplied by (computed once per scorer, not per batch)."""
        return self.layers[0].weight[:, : self.in_dim].t().contiguous()

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        drop: bool | None = None,
        input_weight_t: Tensor | None = None,
    ) -> Tensor:
        r"""``drop`` forces input dropout on or off (default: on in training mode).

        ``x`` may be a sparse CSR tensor (a batch of raw histories at inference): the first
        layer is then one sparse-dense product with ``input_weight_t`` (default: computed
        here), so no dense copy of the rows is made.
        """
        # float32 embedding; the weights' dtype if the model was cast (model.double())
        emb = self.time_proj(timestep_embedding(t, self.emb_size).to(self.time_proj.weight.dtype))
        dropping = self.training if drop is None else drop
        if x.layout == torch.sparse_csr:
            if self.norm or dropping:
                x = x.to_dense()
            else:
                if input_weight_t is None:
                    input_weight_t = self.input_weight_t()
                first = self.layers[0]
                h = x @ input_weight_t + emb @ first.weight[:, self.in_dim :].t() + first.bias
                return self._rest(h)
        if self.norm:
            x = nn.functional.normalize(x, dim=-1)
        if dropping:
            x = nn.functional.dropout(x, self.dropout.p, training=True)
        return self._rest(self.layers[0](torch.cat([x, emb], dim=-1)))

    def _rest(self, h: Tensor) -> Tensor:
        """The layers after the first, given the first layer's pre-activation."""
        for layer in self.layers[1:]:
            h = layer(torch.tanh(h))
        return h
