"""Variational autoencoders for collaborative filtering, as a recsys plugin.

Models (registered through the ``recsys.models`` entry point):

- ``multvae``: Mult-VAE (Liang et al., WWW 2018), multinomial likelihood, KL annealing;
- ``multdae``: Mult-DAE, its denoising-autoencoder sibling;
- ``ardvae``: Mult-VAE with an ARD prior (Saha et al., arXiv 2501.10901) whose per-dimension
  variances are re-estimated from the encoded codes every epoch;
- ``ease``: EASE (Steck, WWW 2019), the closed-form linear baseline.

Every VAE reports posterior-collapse diagnostics each epoch (:mod:`recsys_vae.diagnostics`)
and writes a small HTML/PNG report into the run folder (:mod:`recsys_vae.report`).
"""

from recsys_vae.diagnostics import CollapseStats, collapse_stats
from recsys_vae.ease import EASE
from recsys_vae.vae import ARDVAE, MultDAE, MultVAE

__all__ = ["ARDVAE", "EASE", "CollapseStats", "MultDAE", "MultVAE", "collapse_stats"]
