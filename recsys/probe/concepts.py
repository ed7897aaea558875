r"""A concept dictionary without a language model: attributes, lift, significance, confidence.

For every latent :math:`j` of a probe (an SAE latent, or a baseline's), RecSAE asks two
questions (arXiv 2411.06112, v1): *what do the instances that activate it have in common*, and
*does that description predict the activation on instances it has not seen*.

**Attributes.** Every item gets binary attributes from the dataset's item features
(:func:`build_attributes`): categories of small multi-hot or categorical features (genres),
decade buckets of year-like features, popularity buckets from the training counts, and terms of
text features (multi-hot tokens, normalised and merged; kept when at least ``min_support``
items carry them), plus, for a user site, the users' own categorical features. An instance's
*profile* :math:`p_x \in [0, 1]^{|A|}` is, for a user, the share of the user's training items
that carry each attribute, and for an item, its attributes themselves.

**Concept.** The instances are split once into an *explanation* half :math:`E` and a *held-out*
half :math:`H`. With :math:`T_j \subset E` the ``top_n`` instances of :math:`E` with the largest
positive activation, each attribute :math:`a` gets

.. math::

    \mathrm{lift}_a = \frac{\bar{p}_{T_j, a}}{\bar{p}_a}, \qquad
    z_a = \frac{\bar{p}_{T_j, a} - \bar{p}_a}{\sigma_a / \sqrt{|T_j|}}

against the base rate :math:`\bar{p}_a` and deviation :math:`\sigma_a` over all instances. A
candidate must also be *consistent*: at least ``min_consistency`` of :math:`T_j` lie above the
base rate, so one extreme instance cannot make a concept. The concept is the most significant
attribute set: the consistent attribute of largest :math:`z`, extended greedily by conjunction
(an item carries the set if it carries every attribute of it, and at least ``min_support``
items must) while the set stays consistent, its :math:`z` grows by at least ``min_gain`` and it
has fewer than ``max_terms`` attributes. A latent whose best :math:`z` is below ``min_z`` gets
no concept.

**Confidence.** The concept predicts the activation: an instance is predicted active when its
concept score :math:`s_x` (its profile value for the set) is at least a threshold
:math:`\tau_j`. The positives are a random sample of ``n_eval`` instances where the latent is
*strongly* active (at least its median positive activation), not only its very top, so a
concept must cover the latent's typical strong activation; the negatives are as many random
instances where it is zero. :math:`\tau_j` is fitted on :math:`E`'s sample (best balanced
accuracy) and judged on :math:`H`'s:

.. math::

    \mathrm{recall} = \frac{TP}{|H^+|}, \quad \mathrm{specificity} = \frac{TN}{|H^-|}, \quad
    \mathrm{precision} = \frac{TP}{TP + FP}, \quad
    \mathrm{confidence} = \tfrac{1}{2}(\mathrm{recall} + \mathrm{specificity})

(confidence is balanced accuracy; RecSAE's code calls specificity "precision", draws its 5
held-out positives from the top 10 and simulates activations with an LLM). RecSAE's own
formula is the pooled accuracy :math:`(TP + TN) / (|H^+| + |H^-|)`, which equals balanced
accuracy when the two samples are the same size, as its 5 + 5 are; here :math:`|H^-|` is
``max(|H^+|, n_eval)``, so the two differ for a latent with fewer than ``n_eval`` held-out
positives (recall 1 and specificity 0.75 on 2 + 4 instances: 0.875 balanced, 0.83 pooled). A
latent is *interpretable* when its confidence is at least 0.8. Latents with fewer than
``min_instances`` held-out positives are not evaluated (confidence NaN); RecSAE evaluates
every latent.

**Evidence.** RecSAE explains a latent by what the model *outputs*: its LLM sees each top
instance's last items at activation 0 and the model's top-1 recommended item with the
activation level, and the simulation predicts the activation of that item. By default
(``evidence="history"``) a user's profile here is its training history instead, as in the
notes' non-LLM variant (item attributes of the top-activating sequences); with
``evidence="recommended"`` it is the model's own top-``evidence_k`` recommendations
(training items excluded). The choice moves the headline counts a lot: on the planted
LightGCN of the tests, with the same SAE, recommended-item profiles give about a third fewer
interpretable latents than history profiles (36 against 55 of 128), and profiles of the
top-1 recommendation alone, the nearest to RecSAE, several times fewer (12), naming fewer of
the planted concepts. Counts from history profiles are not comparable with RecSAE's.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from recsys.data.dataset import Dataset, FeatureTable
from recsys.probe.sae import MAX_SEED

# words too common in titles to name anything
STOPWORDS = frozenset(
    (
        "a",
        "about",
        "after",
        "all",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "before",
        "but",
        "by",
        "de",
        "del",
        "der",
        "des",
        "die",
        "du",
        "el",
        "en",
        "for",
        "from",
        "get",
        "go",
        "got",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "la",
        "le",
        "les",
        "los",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "one",
        "or",
        "our",
        "out",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "they",
        "this",
        "those",
        "three",
        "to",
        "too",
        "two",
        "un",
        "une",
        "up",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "without",
        "you",
        "your",
    )
)
_NUMERIC_NAMES = ("year", "age", "date", "time", "price", "count", "length", "duration")
_YEAR = re.compile(r"^\d{4}$")
_WORD = re.compile(r"[^\w]+", re.UNICODE)

POPULARITY_BUCKETS: tuple[tuple[float, float, str], ...] = (
    (0.0, 0.05, "top 5%"),
    (0.05, 0.20, "top 5-20%"),
    (0.20, 0.50, "top 20-50%"),
    (0.50, 1.0, "bottom 50%"),
)
"""(from, to, label): buckets of the items' popularity rank as a fraction of the catalogue."""


class ConceptConfig(BaseModel):
    """How concepts are built and validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    top_n: int = Field(10, gt=0)
    """Top-activating instances that explain a latent (name its concept)."""
    n_eval: int = Field(20, gt=0)
    """Strongly activating instances (and as many silent ones) sampled to fit and to judge the
    concept's prediction, in each half."""
    heldout_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    """Share of instances held out to validate the concepts."""
    max_terms: int = Field(2, gt=0)
    """Attributes in a concept set at most."""
    min_gain: float = Field(0.1, ge=0.0)
    """Relative gain in significance needed to add an attribute to the set."""
    min_z: float = Field(3.0, ge=0.0)
    """Least significance (z) of a concept; below it the latent has none."""
    min_consistency: float = Field(0.5, ge=0.0, le=1.0)
    """Share of the top instances that must be above the base rate on a concept (so a few
    extreme instances cannot make one)."""
    min_support: int = Field(5, gt=0)
    """Items that must carry an attribute (text terms, categories) for it to be used."""
    min_instances: int = Field(5, gt=0)
    """Held-out positives needed to evaluate a latent."""
    max_categories: int = Field(50, gt=1)
    """Larger multi-hot vocabularies are text (terms); larger categoricals are skipped unless
    numeric."""
    confidence_threshold: float = Field(0.8, ge=0.0, le=1.0)
    """Interpretable means confidence at least this (RecSAE: 0.8)."""
    evidence: Literal["history", "recommended"] = "history"
    """What a user's profile is made of: ``history``, the user's training items, or
    ``recommended``, the model's own top-``evidence_k`` items for the user (training items
    excluded), closer to RecSAE, which explains a latent by the model's top-1
    recommendation. Item sites use the items' own attributes either way."""
    evidence_k: int = Field(10, gt=0)
    """Recommended items per user with ``evidence="recommended"``."""
    coherence_top: int = Field(2, ge=2)
    """Top distinct instances per latent whose pairwise cosine is its coherence (RecSAE: 2)."""
    seed: int = Field(0, ge=0, le=MAX_SEED)


@dataclass
class AttributeTable:
    """Binary item attributes, and the user attributes of a user site.

    Attributes:
        names: ``family=value`` (categories, buckets) or ``family~term`` (text terms).
        families: the feature each attribute comes from (``genre``, ``popularity``, ...).
        items: ``[n_items, n_item_attributes]`` 0/1 CSR matrix.
        user_names, user_families, users: the same for user features (``user.gender=F``).
        text_families: families that are text terms (shown as TF-IDF terms on cards).
    """

    names: list[str]
    families: list[str]
    items: sp.csr_array
    user_names: list[str] = field(default_factory=list)
    user_families: list[str] = field(default_factory=list)
    users: sp.csr_array | None = None
    text_families: set[str] = field(default_factory=set)

    @property
    def n_item_attributes(self) -> int:
        return len(self.names)


# ------------------------------------------------------------------------ attribute tables


def _number(token: str) -> float | None:
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _categorical_columns(
    table: FeatureTable, family: str, config: ConceptConfig
) -> tuple[list[str], sp.csr_array] | None:
    """Attribute columns of a categorical feature: decades, numeric buckets or categories.

    A feature whose values are mostly (90%) four-digit years becomes decades; a larger one
    whose values are mostly numbers and whose name says it is a quantity (``age``, ``year``,
    ``price``, ...) becomes quartile buckets. Values that do not parse (``unknown``) get no
    attribute there.
    """
    vocab = [str(v) for v in table.vocab or []]
    codes = np.asarray(table.values, dtype=np.int64)
    n = len(codes)
    if not vocab or not (codes >= 0).any():
        return None
    numbers = [_number(v) for v in vocab]
    is_year = [bool(_YEAR.match(v)) and 1800 <= int(v) <= 2100 for v in vocab]
    col_of_code = np.full(len(vocab), -1, dtype=np.int64)
    if sum(is_year) >= 0.9 * len(vocab):
        decades = sorted({int(v) // 10 * 10 for v, y in zip(vocab, is_year, strict=True) if y})
        names = [f"{family}={d}s" for d in decades]
        for c, (v, y) in enumerate(zip(vocab, is_year, strict=True)):
            if y:
                col_of_code[c] = decades.index(int(v) // 10 * 10)
    elif len(vocab) > config.max_categories:
        numeric = sum(x is not None for x in numbers) >= 0.9 * len(vocab)
        if not (numeric and any(k in family.lower() for k in _NUMERIC_NAMES)):
            return None
        values = np.array([np.nan if x is None else x for x in numbers])
        row_values = values[codes[codes >= 0]]
        row_values = row_values[np.isfinite(row_values)]
        edges = np.unique(np.quantile(row_values, [0.25, 0.5, 0.75]))
        ok = np.isfinite(values)
        col_of_code[ok] = np.searchsorted(edges, values[ok], side="right")
        bounds = [row_values.min(), *edges, row_values.max()]
        names = [
            f"{family}={_fmt(bounds[b])}-{_fmt(bounds[b + 1])}" for b in range(len(bounds) - 1)
        ]
    else:
        names = [f"{family}={v}" for v in vocab]
        col_of_code = np.arange(len(vocab))
    mapped = np.where(codes >= 0, col_of_code[np.maximum(codes, 0)], -1)
    rows = np.flatnonzero(mapped >= 0)
    matrix = sp.csr_array(
        (np.ones(len(rows), dtype=np.float32), (rows, mapped[rows])), shape=(n, len(names))
    )
    return names, matrix


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.3g}"


def normalize_term(token: str) -> str | None:
    """Lower-case, strip punctuation; None for stopwords, numbers and words under 3 letters."""
    word = _WORD.sub("", token.lower())
    if len(word) < 3 or word.isdigit() or word in STOPWORDS:
        return None
    return word


def _text_columns(
    table: FeatureTable, family: str, config: ConceptConfig
) -> tuple[list[str], sp.csr_array] | None:
    """Terms of a multi-hot token feature: tokens normalised, merged, kept by support."""
    terms = [normalize_term(str(t)) for t in table.vocab or []]
    vocab = sorted({t for t in terms if t is not None})
    if not vocab:
        return None
    index = {t: i for i, t in enumerate(vocab)}
    src = [c for c, t in enumerate(terms) if t is not None]
    merge = sp.csr_array(
        (np.ones(len(src), dtype=np.float32), (src, [index[terms[c]] for c in src])),
        shape=(len(terms), len(vocab)),
    )
    matrix = (sp.csr_array(table.values) @ merge).astype(np.float32)
    matrix.data[:] = 1.0
    df = np.bincount(matrix.indices, minlength=len(vocab))
    keep = np.flatnonzero((df >= config.min_support) & (df <= 0.5 * matrix.shape[0]))
    if not len(keep):
        return None
    return [f"{family}~{vocab[k]}" for k in keep], sp.csr_array(matrix[:, keep])


def _feature_columns(
    table: FeatureTable, family: str, config: ConceptConfig
) -> tuple[list[str], sp.csr_array, bool] | None:
    """(names, 0/1 matrix, is_text) of one feature table, or None when it gives nothing."""
    if table.kind == "categorical":
        out = _categorical_columns(table, family, config)
        return None if out is None else (*out, False)
    if table.kind == "multi_hot":
        vocab = table.vocab or []
        if len(vocab) > config.max_categories:
            out = _text_columns(table, family, config)
            return None if out is None else (*out, True)
        matrix = sp.csr_array(table.values).astype(np.float32)
        matrix.data[:] = 1.0
        return [f"{family}={v}" for v in vocab], matrix, False
    return None  # dense features (embeddings) have no discrete attributes


def popularity_buckets(train: sp.csr_array) -> tuple[list[str], sp.csr_array]:
    """Items bucketed by training popularity rank (ties by index): see POPULARITY_BUCKETS."""
    counts = np.bincount(sp.csr_array(train).indices, minlength=train.shape[1])
    n_items = len(counts)
    rank = np.empty(n_items, dtype=np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(n_items)
    frac = rank / max(n_items, 1)
    edges = np.array([b[1] for b in POPULARITY_BUCKETS[:-1]])
    cols = np.searchsorted(edges, frac, side="right")
    names = [f"popularity={b[2]}" for b in POPULARITY_BUCKETS]
    matrix = sp.csr_array(
        (np.ones(n_items, dtype=np.float32), (np.arange(n_items), cols)),
        shape=(n_items, len(names)),
    )
    return names, matrix


def build_attributes(
    dataset: Dataset, train: sp.csr_array, config: ConceptConfig | None = None
) -> AttributeTable:
    """Item (and user) attributes from the dataset's features and the training popularity.

    A feature whose table repeats an earlier one (MovieLens-100k's ``class`` and ``genre``) is
    used once, under the name ``genre`` when one of them has it. Values carried by fewer than
    ``min_support`` items are dropped. Dense features are not used (they have no discrete
    values to name).
    """
    config = config or ConceptConfig()
    names: list[str] = []
    families: list[str] = []
    blocks: list[sp.csr_array] = []
    text: set[str] = set()
    seen: list[sp.csr_array] = []
    # "genre" first, so that of two identical tables (MovieLens' class/genre) it names them
    for key in sorted(dataset.item_features, key=lambda k: (k != "genre", k)):
        out = _feature_columns(dataset.item_features[key], key, config)
        if out is None:
            continue
        cols, matrix, is_text = out
        if any(m.shape == matrix.shape and (m != matrix).nnz == 0 for m in seen):
            continue
        seen.append(matrix)
        # rare values (a decade with two films) would make concepts out of a handful of items
        keep = np.flatnonzero(np.asarray(matrix.sum(axis=0)).ravel() >= config.min_support)
        if not len(keep):
            continue
        names += [cols[c] for c in keep]
        families += [key] * len(keep)
        blocks.append(sp.csr_array(matrix[:, keep]))
        if is_text:
            text.add(key)
    pop_names, pop_matrix = popularity_buckets(train)
    names += pop_names
    families += ["popularity"] * len(pop_names)
    blocks.append(pop_matrix)
    items = sp.csr_array(sp.hstack(blocks, format="csr"))

    user_names: list[str] = []
    user_families: list[str] = []
    user_blocks: list[sp.csr_array] = []
    for key in sorted(dataset.user_features):
        out = _feature_columns(dataset.user_features[key], key, config)
        if out is None or out[2]:
            continue
        cols, matrix, _ = out
        user_names += [f"user.{c}" for c in cols]
        user_families += [f"user.{key}"] * len(cols)
        user_blocks.append(matrix)
    users = sp.csr_array(sp.hstack(user_blocks, format="csr")) if user_blocks else None
    return AttributeTable(names, families, items, user_names, user_families, users, text)


def instance_profiles(
    attributes: AttributeTable, kind: str, train: sp.csr_array
) -> tuple[np.ndarray, list[str], list[str]]:
    """Profiles :math:`p_x` of every user (``kind="user"``) or item, with attribute names.

    For users: :math:`p_u = \\frac{1}{|I_u|} \\sum_{i \\in I_u} a_i` over the training items,
    then the user's own attributes. For items: :math:`a_i`.

    Returns:
        ``(profiles [n, n_attributes] float32, names, families)``.
    """
    if kind == "item":
        return attributes.items.toarray(), list(attributes.names), list(attributes.families)
    train = sp.csr_array(train, dtype=np.float32)
    counts = np.diff(train.indptr).astype(np.float32)
    shares = (train @ attributes.items).toarray() / np.maximum(counts, 1.0)[:, None]
    names, families = list(attributes.names), list(attributes.families)
    if attributes.users is not None:
        shares = np.hstack([shares, attributes.users.toarray()])
        names += attributes.user_names
        families += attributes.user_families
    return shares.astype(np.float32), names, families


# ---------------------------------------------------------------------------- the concepts


@dataclass
class LatentConcept:
    """What one latent means and how well that predicts it.

    ``attributes`` is the concept set (empty when no attribute is significant); ``lift``,
    ``z`` and ``base_rate``/``top_rate`` belong to the set. ``top_attributes`` lists the most
    significant single attributes as ``(name, lift, z)``. Confidence fields are NaN when the
    latent has too few held-out positives to evaluate.
    """

    latent: int
    frequency: float
    max_activation: float
    mean_activation: float
    n_active: int
    top_instances: list[int]
    attributes: list[str]
    lift: float
    z: float
    base_rate: float
    top_rate: float
    threshold: float
    recall: float
    specificity: float
    precision: float
    confidence: float
    n_pos: int
    n_neg: int
    top_attributes: list[tuple[str, float, float]] = field(default_factory=list)
    description: str | None = None
    coherence: float = math.nan
    """RecSAE's coherence (:mod:`recsys.probe.coherence`); NaN until the probe sets it."""
    activation_deciles: list[float] | None = None
    """10th..90th percentiles of the latent's positive activations; None if it never fires."""

    @property
    def label(self) -> str:
        return " & ".join(self.attributes) if self.attributes else "(no concept)"

    @property
    def primary(self) -> str | None:
        return self.attributes[0] if self.attributes else None

    def interpretable(self, threshold: float = 0.8) -> bool:
        return (
            bool(self.attributes)
            and math.isfinite(self.confidence)
            and (self.confidence >= threshold)
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out["label"] = self.label
        out["top_attributes"] = [
            {"attribute": n, "lift": lift, "z": z} for n, lift, z in self.top_attributes
        ]
        return out


DECILES = np.arange(10, 100, 10)
"""The percentiles of :func:`activation_deciles`."""


def activation_deciles(activations: np.ndarray) -> np.ndarray:
    """Deciles of each column's positive entries: ``[9, m]`` (NaN for a column with none).

    Vectorised over the whole matrix: a column-wise sort puts each latent's positive
    activations last, and numpy's default (linear) percentile is read off that tail.
    """
    acts = np.asarray(activations, dtype=np.float64)
    n = acts.shape[0]
    ordered = np.sort(acts, axis=0)
    count = (acts > 0).sum(0)
    pos = DECILES[:, None] / 100.0 * np.maximum(count - 1, 0)[None, :]
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0)[None, :])
    start = (n - count)[None, :]
    rows_lo = np.minimum(start + lo, n - 1)
    rows_hi = np.minimum(start + hi, n - 1)
    a = np.take_along_axis(ordered, rows_lo, axis=0)
    b = np.take_along_axis(ordered, rows_hi, axis=0)
    out = np.clip(a + (b - a) * (pos - lo), a, b)  # no rounding past a neighbour
    out[:, count == 0] = np.nan
    return out


def split_instances(n: int, heldout_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the held-out instances (a seeded random ``heldout_fraction`` of n)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: round(heldout_fraction * n)]] = True
    return mask


def _best_threshold(pos: np.ndarray, neg: np.ndarray) -> float:
    """The threshold :math:`\\tau` maximising balanced accuracy of ``score >= tau``."""
    cands = np.unique(np.concatenate([pos, neg]))
    if len(cands) == 0:
        return math.inf
    tpr = (pos[None, :] >= cands[:, None]).mean(1) if len(pos) else np.zeros(len(cands))
    tnr = (neg[None, :] < cands[:, None]).mean(1) if len(neg) else np.ones(len(cands))
    bal = tpr + tnr
    best = int(np.argmax(bal))
    # midway to the next lower score, so slightly weaker held-out instances still count
    lower = cands[best - 1] if best > 0 else cands[best]
    return float((cands[best] + lower) / 2) if best > 0 else float(cands[best])


def _set_scores(
    attrs: list[int],
    profiles: np.ndarray,
    n_item_attributes: int,
    item_attrs: sp.csr_array,
    kind: str,
    train_rows: sp.csr_array | None,
) -> np.ndarray:
    """Concept score of every instance for a conjunction of attributes."""
    if len(attrs) == 1:
        return profiles[:, attrs[0]]
    item_part = [a for a in attrs if a < n_item_attributes]
    user_part = [a for a in attrs if a >= n_item_attributes]
    if item_part:
        carries = np.asarray(item_attrs[:, item_part].sum(axis=1)).ravel() >= len(item_part)
        if kind == "item":
            score = carries.astype(np.float32)
        else:
            assert train_rows is not None
            counts = np.maximum(np.diff(train_rows.indptr), 1)
            score = (train_rows @ carries.astype(np.float32)) / counts
    else:
        score = np.ones(profiles.shape[0], dtype=np.float32)
    for a in user_part:
        score = score * profiles[:, a]
    return np.asarray(score, dtype=np.float32)


def build_concepts(
    activations: np.ndarray,
    profiles: np.ndarray,
    names: list[str],
    heldout: np.ndarray,
    config: ConceptConfig,
    *,
    item_attributes: sp.csr_array,
    kind: str,
    train: sp.csr_array | None = None,
) -> list[LatentConcept]:
    """One :class:`LatentConcept` per column of ``activations`` ``[n, m]`` (non-negative).

    Args:
        activations: latent activations of every instance (0 = not active).
        profiles: ``[n, n_attributes]`` from :func:`instance_profiles`.
        names: attribute names (columns of ``profiles``).
        heldout: boolean ``[n]``, the held-out half (the rest explains).
        config: :class:`ConceptConfig`.
        item_attributes: ``[n_items, n_item_attributes]`` (for conjunctions).
        kind: ``"user"`` or ``"item"``.
        train: the training matrix (user sites, for conjunctions).
    """
    acts = np.asarray(activations, dtype=np.float32)
    n, m = acts.shape
    base = profiles.mean(0)
    sd = profiles.std(0)
    usable = sd > 1e-9
    n_item_attr = item_attributes.shape[1]
    train_rows = sp.csr_array(train, dtype=np.float32) if train is not None else None
    explain_idx = np.flatnonzero(~heldout)
    held_idx = np.flatnonzero(heldout)
    active = acts > 0
    n_active = active.sum(0)
    deciles = activation_deciles(acts) if n else np.full((len(DECILES), m), np.nan)
    out: list[LatentConcept] = []
    for j in range(m):
        a = acts[:, j]
        rng = np.random.default_rng([config.seed, j])
        pos_e = explain_idx[a[explain_idx] > 0]
        top = pos_e[np.argsort(-a[pos_e], kind="stable")[: config.top_n]]
        record = LatentConcept(
            latent=j,
            frequency=float(n_active[j] / max(n, 1)),
            max_activation=float(a.max(initial=0.0)),
            mean_activation=float(a[active[:, j]].mean()) if n_active[j] else 0.0,
            n_active=int(n_active[j]),
            top_instances=[int(i) for i in top],
            attributes=[],
            lift=float("nan"),
            z=float("nan"),
            base_rate=float("nan"),
            top_rate=float("nan"),
            threshold=float("nan"),
            recall=float("nan"),
            specificity=float("nan"),
            precision=float("nan"),
            confidence=float("nan"),
            n_pos=0,
            n_neg=0,
            activation_deciles=[float(v) for v in deciles[:, j]] if n_active[j] else None,
        )
        out.append(record)
        if len(top) < max(2, config.min_instances):
            continue
        top_profiles = profiles[top]
        mean_top = top_profiles.mean(0)
        consistency = (top_profiles > base).mean(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(usable, (mean_top - base) / (sd / math.sqrt(len(top))), -np.inf)
            lift = np.where(base > 0, mean_top / base, np.nan)
        # a candidate is significant and shared by most top instances, not carried by a few
        z_ok = np.where(consistency >= config.min_consistency, z, -np.inf)
        order = np.argsort(-z_ok, kind="stable")
        shown = np.argsort(-z, kind="stable")
        record.top_attributes = [
            (names[i], float(lift[i]), float(z[i])) for i in order[:5] if np.isfinite(z_ok[i])
        ] or [(names[i], float(lift[i]), float(z[i])) for i in shown[:5] if np.isfinite(z[i])]
        if not np.isfinite(z_ok[order[0]]) or z_ok[order[0]] < config.min_z:
            continue
        chosen = [int(order[0])]
        scores = profiles[:, chosen[0]]
        best_z = float(z_ok[order[0]])
        for _ in range(config.max_terms - 1):
            best_next = None
            for cand in order[1:8]:
                cand = int(cand)
                if cand in chosen or not np.isfinite(z_ok[cand]) or z_ok[cand] < config.min_z:
                    continue
                attrs = [*chosen, cand]
                items_part = [a for a in attrs if a < n_item_attr]
                if len(items_part) > 1:
                    carried = item_attributes[:, items_part].sum(axis=1)
                    if int((np.asarray(carried).ravel() >= len(items_part)).sum()) < (
                        config.min_support
                    ):
                        continue
                s = _set_scores(attrs, profiles, n_item_attr, item_attributes, kind, train_rows)
                s_sd = float(s.std())
                if s_sd <= 1e-9:
                    continue
                s_mean = float(s.mean())
                if float((s[top] > s_mean).mean()) < config.min_consistency:
                    continue
                s_z = (float(s[top].mean()) - s_mean) / (s_sd / math.sqrt(len(top)))
                if s_z > best_z * (1 + config.min_gain) and (
                    best_next is None or s_z > best_next[1]
                ):
                    best_next = (cand, s_z, s)
            if best_next is None:
                break
            chosen.append(best_next[0])
            best_z, scores = best_next[1], best_next[2]
        record.attributes = [names[i] for i in chosen]
        record.z = best_z
        record.base_rate = float(scores.mean())
        record.top_rate = float(scores[top].mean())
        record.lift = record.top_rate / record.base_rate if record.base_rate > 0 else math.inf

        # positives: a random sample of the strong activations (>= the latent's median
        # positive activation), negatives: as many random silent instances; the threshold is
        # fitted on the explanation half and judged on the held-out half
        positive_values = a[a > 0]
        strong = float(np.median(positive_values)) if len(positive_values) else math.inf

        def sample(pool: np.ndarray, size: int, rng: np.random.Generator = rng) -> np.ndarray:
            return rng.choice(pool, size=min(len(pool), size), replace=False)

        pos_e = sample(explain_idx[a[explain_idx] >= strong], config.n_eval)
        neg_e = sample(explain_idx[a[explain_idx] == 0], max(len(pos_e), config.n_eval))
        tau = _best_threshold(scores[pos_e], scores[neg_e])
        record.threshold = tau
        pos_h = sample(held_idx[a[held_idx] >= strong], config.n_eval)
        neg_h = sample(held_idx[a[held_idx] == 0], max(len(pos_h), config.n_eval))
        record.n_pos, record.n_neg = len(pos_h), len(neg_h)
        if len(pos_h) < config.min_instances or len(neg_h) == 0:
            continue
        tp = int((scores[pos_h] >= tau).sum())
        fp = int((scores[neg_h] >= tau).sum())
        record.recall = tp / len(pos_h)
        record.specificity = 1.0 - fp / len(neg_h)
        record.precision = tp / (tp + fp) if tp + fp else 0.0
        record.confidence = 0.5 * (record.recall + record.specificity)
    return out


def summarize(concepts: list[LatentConcept], threshold: float = 0.8) -> dict[str, float]:
    """Counts of latents evaluated and interpretable (confidence >= 0.8, 0.9, 1.0)."""
    alive = [c for c in concepts if c.n_active > 0]
    evaluated = [c for c in concepts if math.isfinite(c.confidence)]
    conf = np.array([c.confidence for c in evaluated]) if evaluated else np.zeros(0)
    named = [c for c in concepts if c.attributes]
    return {
        "n_latents": len(concepts),
        "n_alive": len(alive),
        "n_with_concept": len(named),
        "n_evaluated": len(evaluated),
        "n_interpretable": sum(c.interpretable(threshold) for c in concepts),
        "n_distinct_concepts": len({c.label for c in concepts if c.interpretable(threshold)}),
        "n_confidence_ge_0_9": int((conf >= 0.9).sum()) if len(conf) else 0,
        "n_confidence_eq_1": int((conf >= 1.0).sum()) if len(conf) else 0,
        "share_interpretable_of_alive": (
            sum(c.interpretable(threshold) for c in concepts) / len(alive) if alive else 0.0
        ),
        "mean_confidence": float(conf.mean()) if len(conf) else float("nan"),
    }


def named_concepts(
    concepts: list[LatentConcept], targets: list[str], threshold: float = 0.8
) -> dict[str, int | None]:
    """For each target attribute, the most confident interpretable latent whose concept
    starts with it (its primary attribute), or None when no latent names it."""
    found: dict[str, int | None] = {}
    for target in targets:
        hits = [c for c in concepts if c.primary == target and c.interpretable(threshold)]
        hits.sort(key=lambda c: (-c.confidence, -c.z))
        found[target] = hits[0].latent if hits else None
    return found


def tfidf_terms(
    instances: list[int],
    kind: str,
    text_matrix: sp.csr_array,
    term_names: list[str],
    train: sp.csr_array | None,
    n_terms: int = 5,
) -> list[tuple[str, float]]:
    """The most distinctive terms of the text of ``instances`` (their items for a user site).

    The "document" is the concatenated text of the instances' items, compared with the text of
    all instances' items: with :math:`f_t` and :math:`F_t` a term's frequency in the document
    and overall, :math:`N` items and :math:`\\mathrm{df}_t` the items carrying :math:`t`,

    .. math::

        \\mathrm{score}_t = \\max(f_t - F_t, 0) \\log \\frac{N}{\\mathrm{df}_t}

    (TF-IDF of the excess term frequency, so words every history contains do not come first).
    """
    if not instances or text_matrix.shape[1] == 0:
        return []

    def frequencies(rows: list[int] | None) -> np.ndarray:
        if kind == "item":
            part = text_matrix if rows is None else text_matrix[rows]
            counts = np.asarray(part.sum(axis=0)).ravel()
        else:
            assert train is not None
            hist = sp.csr_array(train)
            weights = np.asarray((hist if rows is None else hist[rows]).sum(axis=0)).ravel()
            counts = text_matrix.T @ weights
        total = counts.sum()
        return counts / total if total > 0 else counts

    excess = np.maximum(frequencies(list(instances)) - frequencies(None), 0.0)
    df = np.asarray(text_matrix.sum(axis=0)).ravel()
    score = excess * np.log(text_matrix.shape[0] / np.maximum(df, 1.0))
    order = np.argsort(-score, kind="stable")[:n_terms]
    return [(term_names[i], float(score[i])) for i in order if score[i] > 0]


def item_titles(dataset: Dataset) -> np.ndarray:
    """Readable item names: titles from an atomic ``.item`` file next to the data when it has
    a ``*title*`` column (RecBole layout), else ``item <raw id>``."""
    names = np.array([f"item {r}" for r in dataset.items.ids], dtype=object)
    source = Path(dataset.source) if dataset.source else None
    if source is None:
        return names
    candidates = [source.with_suffix(".item")] if source.suffix == ".inter" else []
    if source.is_dir():
        candidates += sorted(source.glob("*.item"))
    for path in candidates:
        try:
            if not path.is_file():
                continue
            import pandas as pd

            frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        except (OSError, ValueError):
            continue
        cols = {c.split(":")[0]: c for c in frame.columns}
        title = next((c for k, c in cols.items() if "title" in k), None)
        ident = cols.get("item_id")
        year = next((c for k, c in cols.items() if "year" in k), None)
        if title is None or ident is None:
            continue
        text = frame[title].astype(str)
        if year is not None:
            text = text + " (" + frame[year].astype(str) + ")"
        lookup = dict(zip(frame[ident].astype(str), text, strict=False))
        return np.array([lookup.get(str(r), f"item {r}") for r in dataset.items.ids], dtype=object)
    return names
