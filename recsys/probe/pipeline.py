"""The probe end to end: collect, train the SAE, name latents, ablate, ITDA, baselines.

:func:`run_probe` works on an in-memory model, dataset and split (tests, notebooks);
:func:`probe_run` on a run folder written by ``recsys train`` (the CLI), adding the report files
and MLflow logging. The steps:

1. collect the frozen model's representation at the site (:mod:`recsys.probe.collect`);
2. train a TopK SAE on it, selecting the epoch on validation NDCG@10 of the model whose
   representation is replaced by the reconstruction (scores within ``train.select_tolerance``
   of the best tie and the lower FVU wins; FVU alone for non-scoring sites). A per-user site
   has one vector per user and no held-out vectors, so these FVUs are training FVUs (the
   history's ``fvu`` column; it has no ``fvu_valid``). RecSAE selects on NDCG@5, with no tie
   rule. A selected SAE at FVU >= 1 (worse than the mean) or above the untrained SAE's FVU,
   or an untrained one (``train.epochs=0``), is a warning in the log, the report and the
   summary (:func:`sae_warnings`); training is not changed;
3. build the concept dictionary and its held-out confidence for the SAE and for two baselines:
   an untrained SAE (RecSAE's "Init": random uniform weights, the same input normalisation and
   pre-encoder bias) and the raw neurons (each neuron's positive and negative half as two
   latents, centred on the mean), and RecSAE's coherence of each
   (:mod:`recsys.probe.coherence`; top instances de-duplicated by the model's top-1
   recommended item on a user site). A user's concept evidence is its training history
   (``concepts.evidence="history"``) or the model's top-K recommendations (``"recommended"``,
   nearer RecSAE; see :mod:`recsys.probe.concepts`);
4. ablate and steer the most confident interpretable latents against random-latent controls;
5. build an ITDA dictionary and compare it (Jaccard) with the model's other sites of the same
   kind, with another model (``compare``) and with random vectors (chance level);
6. assemble per-latent cards (top items, attribute lifts, TF-IDF terms, labeller text).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.errors import ConfigError, DataError
from recsys.eval.evaluator import Evaluator, validate_metric_name
from recsys.jsonio import plain  # also importable from here, where it was first defined
from recsys.models.base import Recommender
from recsys.probe.ablation import (
    AblationConfig,
    Ablator,
    LatentEffect,
    concept_item_mask,
    summarize_effects,
)
from recsys.probe.coherence import chance_coherence, latent_coherence, method_coherence
from recsys.probe.collect import (
    ProbeSiteError,
    Site,
    collect_representations,
    resolve_site,
    site_kind,
)
from recsys.probe.concepts import (
    AttributeTable,
    ConceptConfig,
    LatentConcept,
    build_attributes,
    build_concepts,
    instance_profiles,
    item_titles,
    split_instances,
    summarize,
    tfidf_terms,
)
from recsys.probe.itda import build_itda, chance_jaccard, itda_fvu, jaccard
from recsys.probe.labeller import Labeller, LatentEvidence
from recsys.probe.sae import (
    MAX_SEED,
    SAEConfig,
    SAEOptions,
    SAETrainConfig,
    TopKSAE,
    encode_all,
    fvu,
    reconstruct,
    torch_threads,
    train_sae,
)

log = logging.getLogger(__name__)


class ITDAConfig(BaseModel):
    """The ITDA dictionary (``itda`` section of a probe)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = True
    k: int = Field(8, gt=0)
    """Matching-pursuit steps."""
    delta: float | None = Field(None, gt=0)
    """Error threshold for adding an atom; None means cosine 0.9 (``(2 - 2*0.9) / d``)."""
    batch_size: int = Field(64, gt=0)
    max_atoms: int | None = Field(None, gt=0)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Order of the instance stream (the same for every model compared)."""


class ProbeConfig(BaseModel):
    """Everything a probe needs; ``recsys probe --set section.key=value`` sets any key."""

    model_config = ConfigDict(extra="forbid")

    site: str = "user"
    """Representation to probe: ``user``, ``item`` or a named one (see the model)."""
    sae: SAEOptions = Field(default_factory=SAEOptions)
    train: SAETrainConfig = Field(default_factory=SAETrainConfig)
    concepts: ConceptConfig = Field(default_factory=ConceptConfig)
    ablation: AblationConfig = Field(default_factory=AblationConfig)
    itda: ITDAConfig = Field(default_factory=ITDAConfig)
    baselines: bool = True
    """Also analyse the untrained SAE and the raw neurons."""
    topk: list[int] = Field(default_factory=lambda: [5, 10, 20, 50])
    """Cutoffs of the recommendation-quality table (RecSAE reports HR/NDCG@{5,10,20,50})."""
    valid_metric: str = "ndcg_at_10"
    """Selects the SAE epoch (the model with the reconstruction, on validation)."""
    cards: int = Field(24, ge=0)
    """Latent cards in the report."""
    labeller: str | None = None
    """``package.module:name`` of an external labeller; None (the default) uses none."""

    @field_validator("valid_metric")
    @classmethod
    def _metric_known(cls, value: str) -> str:
        validate_metric_name(value)
        return value

    @field_validator("topk")
    @classmethod
    def _topk_positive(cls, value: list[int]) -> list[int]:
        if not value or any(k <= 0 for k in value):
            raise ValueError(f"topk must be positive integers, got {value}")
        return sorted(set(value))

    def with_seed(self, seed: int) -> ProbeConfig:
        """The same config with every section's seed set to ``seed``.

        Raises:
            ConfigError: ``seed`` is outside ``0 .. 2**32 - 1``.
        """
        # validated, not model_copy(update=...): that would skip the seed's range check and a
        # negative seed would only fail deep inside numpy
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"seed must be in 0..{MAX_SEED}, got {seed}")
        values = self.model_dump()
        for name in ("train", "concepts", "ablation", "itda"):
            values[name]["seed"] = seed
        return type(self).model_validate(values)


@dataclass
class ProbeResult:
    """Everything the report shows (``to_json`` gives ``report.json``)."""

    config: ProbeConfig
    setup: dict[str, Any]
    quality: dict[str, Any]
    history: list[dict[str, float]]
    concepts: list[LatentConcept]
    summaries: dict[str, dict[str, float]]
    baseline_concepts: dict[str, list[LatentConcept]]
    frequencies: dict[str, list[float]]
    effects: list[LatentEffect]
    ablation: dict[str, float]
    itda: dict[str, Any]
    cards: list[dict[str, Any]]
    sae: TopKSAE
    site: Site
    latents: np.ndarray
    """SAE activations of every row of the site ``[n, m]``."""
    heldout: np.ndarray
    """Boolean ``[n]``: the instances held out to validate the concepts."""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Why the analysis may not be trustworthy (:func:`sae_warnings`); each is in ``notes``
    too, and in the CLI summary."""

    def interpretable(self) -> list[LatentConcept]:
        t = self.config.concepts.confidence_threshold
        return [c for c in self.concepts if c.interpretable(t)]

    def to_json(self) -> dict[str, Any]:
        """The report's numbers as plain JSON values (NaN and infinity become null)."""
        payload = {
            "setup": self.setup,
            "config": self.config.model_dump(mode="json"),
            "quality": self.quality,
            "history": self.history,
            "summary": self.summaries,
            "latents": [c.to_dict() for c in self.concepts],
            "baselines": {
                name: {
                    "summary": self.summaries.get(name, {}),
                    "confidence": [c.confidence for c in cs],
                    "frequency": self.frequencies.get(name, []),
                    "concepts": [
                        {
                            "latent": c.latent,
                            "label": c.label,
                            "confidence": c.confidence,
                            "coherence": c.coherence,
                        }
                        for c in cs
                        if c.attributes
                    ],
                }
                for name, cs in self.baseline_concepts.items()
            },
            "frequency": self.frequencies.get("sae", []),
            "ablation": {
                "summary": self.ablation,
                "latents": [e.to_dict() for e in self.effects],
            },
            "itda": self.itda,
            "cards": self.cards,
            "notes": self.notes,
            "warnings": self.warnings,
            "seconds": self.seconds,
        }
        return plain(payload)


# ------------------------------------------------------------------------------- helpers


def _metrics(
    evaluator: Evaluator,
    model: Recommender,
    reps: dict[str, torch.Tensor],
    split: Split,
    part: Literal["valid", "test"],
) -> dict[str, float]:
    """Metrics of scoring from ``reps`` on ``part``, masked as the trainer masks them
    (:meth:`~recsys.data.split.Split.evaluation_target`)."""
    truth, exclude = split.evaluation_target(part, evaluator.mask_valid_at_test)
    result = evaluator.evaluate(model.scorer_from(reps), truth, exclude=exclude)
    return {k: float(v) for k, v in result.items() if k != "n_users"}


def neuron_activations(x: torch.Tensor) -> np.ndarray:
    """Raw-neuron baseline: ``[n, 2d]``, the positive and negative parts of the centred
    neurons, :math:`[\\max(x - \\bar{x}, 0), \\max(\\bar{x} - x, 0)]`."""
    centred = (x - x.mean(0)).numpy()
    return np.hstack([np.maximum(centred, 0.0), np.maximum(-centred, 0.0)]).astype(np.float32)


def neuron_decode(acts: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`neuron_activations`: :math:`\\bar{x} + a^+ - a^-`."""
    d = x.shape[1]
    a = torch.from_numpy(np.ascontiguousarray(acts, dtype=np.float32))
    return x.mean(0) + a[:, :d] - a[:, d:]


@torch.no_grad()
def sae_decode(sae: TopKSAE, acts: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """The SAE's reconstruction (input space) of ``x`` from (edited) latents ``acts``."""
    z = torch.from_numpy(np.ascontiguousarray(acts, dtype=np.float32))
    return sae.decode(z, x)


def input_fvu(x: torch.Tensor, recon: torch.Tensor) -> float:
    """FVU in the input space: :math:`\\lVert \\hat{X} - X \\rVert^2 / \\lVert X - \\bar{X}
    \\rVert^2`."""
    return float((recon - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12))


def recommended_items(
    model: Recommender,
    reps: dict[str, torch.Tensor],
    train: sp.csr_array,
    k: int,
) -> np.ndarray:
    """Every user's top-``k`` items by the model's own scores (its unedited representations),
    training items excluded: ``int64 [n_users, k]``, ``-1`` where a user has fewer rankable
    items."""
    evaluator = Evaluator(topk=(k,), metrics=("ndcg",))
    users = np.arange(train.shape[0])
    items, _ = evaluator.topk(model.scorer_from(reps), users, k, exclude=[train])
    return items


def recommended_matrix(items: np.ndarray, n_items: int) -> sp.csr_array:
    """0/1 ``[n_users, n_items]`` matrix of recommended items ``[n_users, k]`` (-1 = none)."""
    rows, cols = np.nonzero(items >= 0)
    return sp.csr_array(
        (np.ones(len(rows), dtype=np.float32), (rows, items[rows, cols])),
        shape=(items.shape[0], n_items),
    )


def _frequency(acts: np.ndarray) -> list[float]:
    return (acts > 0).mean(0).astype(float).tolist()


def _history_items(top: list[int], train: sp.csr_array, n: int) -> list[int]:
    """Items most over-represented in the histories of ``top`` users (count minus expected)."""
    if not top:
        return []
    counts = np.asarray(train[top].sum(axis=0)).ravel()
    popularity = np.asarray(train.sum(axis=0)).ravel() / max(train.shape[0], 1)
    excess = counts - len(top) * popularity
    order = np.argsort(-excess, kind="stable")[:n]
    return [int(i) for i in order if counts[i] > 0]


@torch.no_grad()
def _promoted_items(ablator: Ablator, latent: int, rows: list[int], n: int) -> list[int]:
    """Items whose score falls most when the latent is ablated on ``rows`` (its top users)."""
    if not rows:
        return []
    idx = np.asarray(rows, dtype=np.int64)
    dz = torch.zeros(len(idx), ablator.z.shape[1])
    dz[:, latent] = -ablator.z[torch.from_numpy(idx), latent]
    edited = ablator.edited(idx, dz)
    users = torch.from_numpy(idx)
    before = ablator.model.scorer_from(ablator.reps)(users)
    after = ablator.model.scorer_from({**ablator.reps, ablator.site: edited})(users)
    drop = (before - after).mean(0).numpy()
    return [int(i) for i in np.argsort(-drop, kind="stable")[:n]]


# ------------------------------------------------------------------------------ the probe


@dataclass
class ProbePlan:
    """What :func:`check_probe` found: the model's representations, the site and the SAE."""

    reps: dict[str, torch.Tensor]
    site: Site
    sae_config: SAEConfig


def check_probe(model: Recommender, split: Split, config: ProbeConfig) -> ProbePlan:
    r"""Collect the site of ``config`` and check the settings against it, before any training.

    Every user error of a probe that needs the model (an unknown or unusable site, ``sae.k``
    above the :math:`m = d \cdot \text{expansion}` latents, a held-out share that leaves
    either half of the site's instances empty, a split of another shape) is raised here;
    :func:`~recsys.probe.runs.probe_run` calls it before it opens an MLflow run, and
    :func:`run_probe` calls it first.

    Raises:
        ProbeSiteError: unknown or unusable site.
        ConfigError: ``sae.k`` larger than the latent count, or ``concepts.heldout_fraction``
            holding out none or all of the instances.
        DataError: the split's shape is not the model's.
    """
    reps = collect_representations(model, split.scoring_history(model.fold_in))
    site = resolve_site(model, reps, config.site)
    sae_config = SAEConfig(d_in=site.d, **config.sae.model_dump())
    if sae_config.k > sae_config.n_latents:
        raise ConfigError(
            f"sae.k={sae_config.k} exceeds the {sae_config.n_latents} latents "
            f"({site.d} dimensions x sae.expansion={sae_config.expansion})"
        )
    held = round(config.concepts.heldout_fraction * site.n)
    if not 0 < held < site.n:
        # checked before the SAE trains: one half finds the concepts, the other tests them
        raise ConfigError(
            f"concepts.heldout_fraction={config.concepts.heldout_fraction:g} holds out {held} "
            f"of the site's {site.n} {site.kind}s; both the held-out and the explaining part "
            "need at least one"
        )
    if split.shape != (model.n_users, model.n_items):
        raise DataError(
            f"the split has shape {split.shape} but the model was set up for "
            f"{model.n_users} users x {model.n_items} items"
        )
    return ProbePlan(reps, site, sae_config)


def sae_warnings(quality: dict[str, Any], config: ProbeConfig) -> list[str]:
    r"""Why the selected SAE, on which the whole analysis rests, should not be trusted.

    With :math:`\mathrm{FVU} = \lVert \hat{X} - X \rVert_F^2 / \lVert X - \bar{X}
    \rVert_F^2`, predicting every row as the mean :math:`\bar{X}` has FVU 1: an SAE at
    FVU >= 1 reconstructs worse than that. One above ``quality["fvu_untrained"]`` does worse
    than the untrained baseline (random weights). ``train.epochs=0`` leaves the SAE at its
    starting weights. The epoch is selected on the validation metric (FVU only breaks ties),
    which need not see a badly scaled reconstruction, so early stopping can keep such an SAE.

    Returns:
        One message per problem (empty for a sound SAE); the probe logs them as warnings and
        puts them in the report's notes.
    """
    out = []
    tc = config.train
    if tc.epochs == 0:
        out.append(
            "train.epochs=0 (--epochs 0): the SAE was not trained; the report analyses its "
            f"starting weights (sae.init={config.sae.init!r}), not a trained SAE"
        )
    value, untrained = quality["fvu"], quality.get("fvu_untrained")
    worse = []
    if value >= 1:
        worse.append("predicting the mean (FVU 1)")
    if untrained is not None and value > untrained:
        worse.append(f"the untrained baseline SAE (FVU {untrained:.3g})")
    if worse:
        if tc.epochs == 0:
            advice = "train it (--epochs)"
        else:
            stopped = (
                f"; early stopping ended training after {quality['epochs_run']} epochs"
                if quality.get("stopped_early")
                else ""
            )
            advice = (
                f"try more epochs (--epochs, now {tc.epochs}), a larger patience (--set "
                f"train.patience=N, now {tc.patience}{stopped}) or a lower learning rate "
                f"(--lr, now {tc.learning_rate:g})"
            )
        out.append(
            f"the selected SAE (epoch {quality['best_epoch']}, FVU {value:.3g}) reconstructs the "
            "site worse than "
            f"{' and than '.join(worse)}, so the concepts, ablations, steering and cards built "
            f"on it are not trustworthy; {advice}"
        )
    return out


def _run_probe(
    model: Recommender,
    dataset: Dataset,
    split: Split,
    config: ProbeConfig | None = None,
    *,
    compare: Recommender | None = None,
    labeller: Labeller | None = None,
    model_name: str | None = None,
    mask_valid_at_test: bool = True,
    compare_history: sp.csr_array | None = None,
    plan: ProbePlan | None = None,
) -> ProbeResult:
    """The body of :func:`run_probe`."""
    tic = time.perf_counter()
    config = config or ProbeConfig()
    notes: list[str] = []
    # what a user has: training rows, and for held-out users (fold-in models) fold-in rows
    history = split.history
    plan = plan or check_probe(model, split, config)
    reps, site, sae_config = plan.reps, plan.site, plan.sae_config
    metric, _, cutoff = config.valid_metric.rpartition("_at_")
    evaluator = Evaluator(
        topk=tuple(sorted({*config.topk, int(cutoff)})),
        metrics=tuple(dict.fromkeys(("ndcg", "recall", "hit", metric))),
        mask_valid_at_test=mask_valid_at_test,
    )

    # -- 1-2: the SAE ----------------------------------------------------------------------
    sae = TopKSAE(sae_config, seed=config.train.seed)
    # RecSAE's "Init" baseline: the same architecture with random weights, never trained
    untrained = TopKSAE(sae_config.model_copy(update={"init": "uniform"}), seed=config.train.seed)
    untrained.fit_init(site.x)
    untrained.eval()
    select = None
    if site.scoring:

        def select(s: TopKSAE) -> float:
            recon = reconstruct(s, site.x)
            return _metrics(evaluator, model, {**reps, site.name: recon}, split, "valid")[
                config.valid_metric
            ]

    else:
        notes.append(
            f"site {site.name!r} is not read by the model's scorer: the SAE is selected on FVU, "
            "and recommendation quality and ablations are not measured"
        )
    train_result = train_sae(
        sae,
        site.x,
        config.train,
        select=select,
        select_name=f"valid_{config.valid_metric}" if site.scoring else "neg_fvu",
    )
    recon = reconstruct(sae, site.x)
    z = encode_all(sae, site.x)
    acts = z.numpy()

    quality: dict[str, Any] = {
        "fvu": fvu(sae, site.x),
        "fvu_untrained": fvu(untrained, site.x),
        "dead_fraction": float(((acts > 0).sum(0) == 0).mean()),
        "best_epoch": train_result.best_epoch,
        "epochs_run": len(train_result.history) - 1,
        "stopped_early": train_result.stopped_early,
    }
    if site.scoring:
        for part in ("valid", "test"):
            base = _metrics(evaluator, model, reps, split, part)
            with_recon = _metrics(evaluator, model, {**reps, site.name: recon}, split, part)
            quality[f"{part}_base"] = base
            quality[f"{part}_sae"] = with_recon
            b = base[config.valid_metric]
            quality[f"{part}_retention"] = with_recon[config.valid_metric] / b if b else math.nan
        quality["valid_metric"] = config.valid_metric
    # an SAE worse than the mean (or than random weights) would carry the whole analysis
    warnings = sae_warnings(quality, config)
    for message in warnings:
        log.warning("%s", message)
    notes[:0] = [f"Warning: {message}" for message in warnings]

    # -- 3: concepts -----------------------------------------------------------------------
    attributes = build_attributes(dataset, split.train, config.concepts)
    ccfg = config.concepts
    # a user's evidence: the items of its history, or the model's recommendations
    evidence = history
    keys = None  # the coherence metric's de-duplication key of every instance
    if site.kind == "user":
        k_rec = ccfg.evidence_k if ccfg.evidence == "recommended" else 1
        recommended = recommended_items(model, reps, history, k_rec)
        if ccfg.evidence == "recommended":
            evidence = recommended_matrix(recommended, split.shape[1])
        # RecSAE de-duplicates top instances by their top-1 recommended item; a user with no
        # rankable item keeps a key of its own
        top1 = recommended[:, 0]
        keys = np.where(top1 >= 0, top1, split.shape[1] + np.arange(len(top1)))
    elif ccfg.evidence == "recommended":
        notes.append(
            "concepts.evidence=recommended applies to user sites; an item's evidence is its "
            "own attributes"
        )
    profiles, names, families = instance_profiles(attributes, site.kind, evidence)
    heldout = split_instances(site.n, ccfg.heldout_fraction, ccfg.seed)
    kwargs = {"item_attributes": attributes.items, "kind": site.kind, "train": evidence}
    concepts = build_concepts(acts, profiles, names, heldout, config.concepts, **kwargs)
    threshold = config.concepts.confidence_threshold
    summaries = {"sae": summarize(concepts, threshold)}
    frequencies = {"sae": _frequency(acts)}
    decoders = {"sae": lambda a: sae_decode(sae, a, site.x)}
    baseline_concepts: dict[str, list[LatentConcept]] = {}
    all_acts = {"sae": acts}
    if config.baselines:
        decoders["untrained"] = lambda a: sae_decode(untrained, a, site.x)
        decoders["neurons"] = lambda a: neuron_decode(a, site.x)
        all_acts["untrained"] = encode_all(untrained, site.x).numpy()
        all_acts["neurons"] = neuron_activations(site.x)
    for name, method_acts in all_acts.items():
        if name == "sae":
            method_concepts = concepts
        else:
            method_concepts = build_concepts(
                method_acts, profiles, names, heldout, config.concepts, **kwargs
            )
            baseline_concepts[name] = method_concepts
            summaries[name] = summarize(method_concepts, threshold)
            frequencies[name] = _frequency(method_acts)
        # RecSAE's coherence: mean pairwise cosine of the site vectors of each latent's top
        # distinct instances, averaged over the interpretable latents (all for the neurons)
        coherence = latent_coherence(method_acts, site.x, top=ccfg.coherence_top, keys=keys)
        for c, value in zip(method_concepts, coherence, strict=True):
            c.coherence = float(value)
        mean, count = method_coherence(
            coherence, None if name == "neurons" else method_concepts, threshold
        )
        summaries[name]["coherence"] = mean
        summaries[name]["n_coherence"] = count
        summaries[name]["coherence_all"] = method_coherence(coherence)[0]
        # how much of the representation the interpretable latents alone explain
        keep = np.array([c.interpretable(threshold) for c in method_concepts])
        summaries[name]["fvu"] = input_fvu(site.x, decoders[name](method_acts))
        summaries[name]["fvu_interpretable_only"] = input_fvu(
            site.x, decoders[name](method_acts * keep[None, :])
        )

    quality["coherence_chance"] = chance_coherence(site.x)

    # -- 4: ablation -----------------------------------------------------------------------
    effects: list[LatentEffect] = []
    ablator = None
    if site.scoring:
        ablator = Ablator(
            model, reps, site.name, site.kind, sae, z, history, split.valid, config.ablation
        )
        effects = _ablate(ablator, concepts, attributes, names, threshold, config.ablation)
    ablation_summary = summarize_effects(effects)

    # -- 5: ITDA ---------------------------------------------------------------------------
    itda = _itda(model, reps, site, split, evaluator, config, compare, compare_history, notes)

    # -- 6: cards --------------------------------------------------------------------------
    titles = item_titles(dataset)
    cards = _cards(concepts, site, attributes, titles, history, ablator, config, labeller, families)

    setup = {
        "model": model_name or getattr(model, "name", type(model).__name__),
        "model_repr": repr(model),
        "dataset": dataset.name,
        "site": site.name,
        "kind": site.kind,
        "scoring_site": site.scoring,
        "n_instances": site.n,
        "d_in": site.d,
        "n_latents": sae_config.n_latents,
        "k": sae_config.k,
        "expansion": sae_config.expansion,
        "normalize": sae_config.normalize,
        "learning_rate": config.train.learning_rate,
        "batch_size": config.train.batch_size,
        "epochs": config.train.epochs,
        "evidence": ccfg.evidence if site.kind == "user" else "item attributes",
        "coherence_top": ccfg.coherence_top,
        "coherence_key": "top-1 recommended item" if keys is not None else "none",
        "n_attributes": len(names),
        "attribute_families": sorted(set(families)),
        "n_heldout": int(heldout.sum()),
        "sites": sorted(reps),
    }
    return ProbeResult(
        config=config,
        setup=setup,
        quality=quality,
        history=train_result.history,
        concepts=concepts,
        summaries=summaries,
        baseline_concepts=baseline_concepts,
        frequencies=frequencies,
        effects=effects,
        ablation=ablation_summary,
        itda=itda,
        cards=cards,
        sae=sae,
        site=site,
        latents=acts,
        heldout=heldout,
        seconds=time.perf_counter() - tic,
        notes=notes,
        warnings=warnings,
    )


def run_probe(
    model: Recommender,
    dataset: Dataset,
    split: Split,
    config: ProbeConfig | None = None,
    *,
    compare: Recommender | None = None,
    labeller: Labeller | None = None,
    model_name: str | None = None,
    mask_valid_at_test: bool = True,
    compare_history: sp.csr_array | None = None,
    plan: ProbePlan | None = None,
) -> ProbeResult:
    """Probe ``model`` (set up and trained on ``split.train``) at ``config.site``.

    Args:
        model: the trained recommender; it is frozen (eval mode, no gradients) and unchanged.
        dataset: its dataset (item features name the latents).
        split: its split (the SAE is selected on ``split.valid``).
        config: :class:`ProbeConfig`.
        compare: a second model trained on the same users, compared by ITDA Jaccard.
        labeller: optional external labeller for latent descriptions.
        model_name: shown in the report (default: the model's registry name).
        mask_valid_at_test: the run's ``eval.mask_valid_at_test``: whether test metrics mask
            validation items (RecBole's protocol) or leave them rankable (MMRec's).
        compare_history: the user rows a fold-in ``compare`` model encodes users from (its
            own run's training plus fold-in rows); default ``split``'s history when ``split``
            has held-out users, else the compared model's training rows.
        plan: what :func:`check_probe` returned for this model, split and config, when the
            caller checked them already (the representations are then not collected again).

    Raises:
        ProbeSiteError: unknown or unusable site.
        ConfigError: ``k`` larger than the latent count, or other bad settings.
    """
    config = config or ProbeConfig()
    with torch_threads(config.train.num_threads):
        return _run_probe(
            model,
            dataset,
            split,
            config,
            compare=compare,
            labeller=labeller,
            model_name=model_name,
            mask_valid_at_test=mask_valid_at_test,
            compare_history=compare_history,
            plan=plan,
        )


def _ablate(
    ablator: Ablator,
    concepts: list[LatentConcept],
    attributes: AttributeTable,
    names: list[str],
    threshold: float,
    config: AblationConfig,
) -> list[LatentEffect]:
    """Ablate the most confident interpretable latents whose concept names item attributes."""
    chosen = [
        c
        for c in sorted(concepts, key=lambda c: (-c.confidence, -c.z))
        if c.interpretable(threshold) and any(a in set(attributes.names) for a in c.attributes)
    ][: config.n_latents]
    alive = np.flatnonzero(np.array([c.n_active > 0 for c in concepts]))
    effects = []
    for c in chosen:
        mask = concept_item_mask(c.attributes, attributes.names, attributes.items)
        if not mask.any():
            continue
        rng = np.random.default_rng([config.seed, c.latent])
        pool = alive[alive != c.latent]
        randoms = rng.choice(pool, size=min(config.n_random, len(pool)), replace=False)
        effects.append(ablator.effect(c.latent, c.label, mask, [int(r) for r in randoms]))
    return effects


def _itda(
    model: Recommender,
    reps: dict[str, torch.Tensor],
    site: Site,
    split: Split,
    evaluator: Evaluator,
    config: ProbeConfig,
    compare: Recommender | None,
    compare_history: sp.csr_array | None,
    notes: list[str],
) -> dict[str, Any]:
    """ITDA dictionary of the site, its quality, and Jaccard similarities."""
    cfg = config.itda
    if not cfg.enabled:
        return {"enabled": False}

    def build(x: torch.Tensor):
        return build_itda(
            x,
            k=cfg.k,
            delta=cfg.delta,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            max_atoms=cfg.max_atoms,
        )

    tic = time.perf_counter()
    dictionary = build(site.x)
    out: dict[str, Any] = {
        "enabled": True,
        "k": cfg.k,
        "delta": dictionary.delta,
        "n_atoms": len(dictionary),
        "share_of_instances": len(dictionary) / site.n,
        "fvu": itda_fvu(dictionary, site.x),
        "seconds": time.perf_counter() - tic,
        "similarity": [],
    }
    if site.scoring:
        recon = torch.cat(
            [dictionary.reconstruct(site.x[s : s + 4096]) for s in range(0, site.n, 4096)]
        )
        valid = _metrics(evaluator, model, {**reps, site.name: recon}, split, "valid")
        out[f"valid_{config.valid_metric}"] = valid[config.valid_metric]
    sims = out["similarity"]

    def compare_with(label: str, other_ids: np.ndarray, **extra: Any) -> None:
        sims.append(
            {
                "other": label,
                "n_atoms": len(other_ids),
                "jaccard": jaccard(dictionary.ids, other_ids),
                "chance": chance_jaccard(len(dictionary), len(other_ids), site.n),
                **extra,
            }
        )

    for name, x in sorted(reps.items()):
        if name == site.name or x.dim() != 2 or x.shape[0] != site.n:
            continue
        # atom ids are row indices: with as many users as items, an item site's ids would
        # match user ids by accident, so only sites whose rows are the same kind compare
        try:
            if site_kind(name, x, int(model.n_users or 0), int(model.n_items or 0)) != site.kind:
                continue
        except ProbeSiteError:
            continue
        compare_with(f"site {name}", build(x).ids)
    if compare is not None:
        if compare_history is None:
            compare_history = split.scoring_history(compare.fold_in)
        # a fold-in model encodes users from history rows: its own run's, held-out users' too
        other_reps = collect_representations(compare, compare_history if compare.fold_in else None)
        if site.name not in other_reps or other_reps[site.name].shape[0] != site.n:
            notes.append(
                f"the compared model has no site {site.name!r} with {site.n} rows; "
                "no cross-model similarity"
            )
        else:
            label = f"model {getattr(compare, 'name', type(compare).__name__)} (site {site.name})"
            compare_with(label, build(other_reps[site.name]).ids, compare=True)
    return out


def _cards(
    concepts: list[LatentConcept],
    site: Site,
    attributes: AttributeTable,
    titles: np.ndarray,
    train: sp.csr_array,
    ablator: Ablator | None,
    config: ProbeConfig,
    labeller: Labeller | None,
    families: list[str],
) -> list[dict[str, Any]]:
    """Per-latent cards: the most confident interpretable latents, then other named ones.

    A user's TF-IDF terms come from the text of its training items, whatever the concept
    evidence (``concepts.evidence``).
    """
    threshold = config.concepts.confidence_threshold
    ranked = sorted(
        [c for c in concepts if c.attributes],
        key=lambda c: (
            not c.interpretable(threshold),
            -(c.confidence if math.isfinite(c.confidence) else -1.0),
            -c.frequency,
        ),
    )[: config.cards]
    text_cols = [i for i, f in enumerate(attributes.families) if f in attributes.text_families]
    text_matrix = attributes.items[:, text_cols] if text_cols else sp.csr_array((train.shape[1], 0))
    text_names = [attributes.names[i].split("~", 1)[1] for i in text_cols]
    cards = []
    # a labeller that fails (its service is down) fails on every card: one line says so
    failed: list[tuple[int, str]] = []
    not_text: list[tuple[int, str]] = []
    for c in ranked:
        top = c.top_instances
        if site.kind == "item":
            item_ids = top[:10]
        elif ablator is not None:
            item_ids = _promoted_items(ablator, c.latent, top, 10)
        else:
            item_ids = _history_items(top, train, 10)
        # five distinct names (a catalogue may list one title under two ids)
        item_names = list(dict.fromkeys(str(titles[i]) for i in item_ids))[:5]
        terms = [t for t, _ in tfidf_terms(top, site.kind, text_matrix, text_names, train)]
        card = {
            "latent": c.latent,
            "label": c.label,
            "interpretable": c.interpretable(threshold),
            "confidence": c.confidence,
            "recall": c.recall,
            "precision": c.precision,
            "specificity": c.specificity,
            "frequency": c.frequency,
            "coherence": c.coherence,
            "lift": c.lift,
            "z": c.z,
            "top_attributes": [
                {"attribute": n, "lift": lift, "z": zz} for n, lift, zz in c.top_attributes
            ],
            "top_items": item_names,
            "terms": terms,
            "top_instances": top[:10],
            "description": None,
        }
        if labeller is not None:
            evidence = LatentEvidence(
                latent=c.latent,
                site=site.name,
                concept=c.label,
                confidence=c.confidence,
                top_attributes=list(c.top_attributes),
                top_items=card["top_items"],
                terms=terms,
            )
            try:
                text = labeller.describe(evidence)
            except Exception as exc:  # an external labeller must not sink the report
                failed.append((c.latent, str(exc) or type(exc).__name__))
            else:
                # anything but text (an LLM client's response object, a dict) would break the
                # page and report.json after all the work is done
                if text is None or isinstance(text, str):
                    card["description"] = text
                else:
                    not_text.append((c.latent, type(text).__name__))
            c.description = card["description"]
        cards.append(card)
    if failed:
        latent, error = failed[0]
        log.warning(
            "labeller failed on %d of %d latents; the first, latent %d: %s",
            len(failed),
            len(ranked),
            latent,
            error,
        )
    if not_text:
        latent, kind = not_text[0]
        log.warning(
            "labeller returned a %s, not a string, for %d of %d latents (the first: latent %d); "
            "ignored",
            kind,
            len(not_text),
            len(ranked),
            latent,
        )
    return cards
