"""RecSAE probes: sparse autoencoders on a trained model's representations, and the report.

- :mod:`recsys.probe.sae`: the TopK sparse autoencoder and its training loop;
- :mod:`recsys.probe.collect`: probe sites of a frozen model;
- :mod:`recsys.probe.concepts`: item attributes, lift, concept dictionary, held-out confidence;
- :mod:`recsys.probe.coherence`: RecSAE's coherence of a latent's top instances;
- :mod:`recsys.probe.ablation`: ablation and steering of latents against random controls;
- :mod:`recsys.probe.itda`: ITDA dictionaries by matching pursuit and their Jaccard similarity;
- :mod:`recsys.probe.labeller`: the optional external-labeller hook;
- :mod:`recsys.probe.pipeline`: :func:`run_probe` end to end on an in-memory model;
- :mod:`recsys.probe.report`: the HTML page and ``report.json``;
- :mod:`recsys.probe.runs`: :func:`probe_run` on a run folder, with MLflow logging.
"""

from recsys.probe.pipeline import ProbeConfig, ProbeResult, run_probe
from recsys.probe.sae import SAEConfig, SAEOptions, SAETrainConfig, TopKSAE, train_sae

__all__ = [
    "ProbeConfig",
    "ProbeResult",
    "SAEConfig",
    "SAEOptions",
    "SAETrainConfig",
    "TopKSAE",
    "run_probe",
    "train_sae",
]
