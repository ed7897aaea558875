r"""Two-tower retrieval with self-supervised item-tower training (Yao et al., CIKM 2021).

A query tower over the user's id, features and (optionally) a bag of their training items,
and an item tower over the item's id and features, both MLPs with L2-normalised outputs,
trained with a batch softmax over in-batch negatives; a contrastive task between two
complementary feature-masked views of uniformly sampled items regularises the item tower
(:mod:`recsys.models.ssl_masks` builds the masks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from recsys.data.dataset import Dataset, FeatureTable
from recsys.errors import ConfigError, DataError
from recsys.models.base import DotProductScorer, ModelConfig, Recommender, ScoreFn
from recsys.models.registry import register
from recsys.models.ssl_masks import (
    adjusted_mutual_information,
    cfm_groups,
    dense_codes,
    masked_set_size,
    multi_hot_codes,
)

log = logging.getLogger(__name__)

ITEM_ID = "item_id"
"""Name of the item-id feature in the item tower's feature list."""
_CHUNK = 65536  # rows per tower pass when embedding a whole catalogue


class TwoTowerConfig(ModelConfig):
    """Hyper-parameters of :class:`TwoTower`. Defaults: the paper's multi-task model with CFM;
    values the paper does not give (temperatures, alpha, sizes) follow common practice."""

    embedding_size: int = Field(64, gt=0)
    """Dimension :math:`d` of the towers' (L2-normalised) outputs."""
    feature_dim: int = Field(32, gt=0)
    """Dimension of every input feature's embedding (ids, categorical, bags, dense
    projections)."""
    hidden_sizes: list[PositiveInt] = Field(default_factory=lambda: [128])
    """Hidden layer widths of each tower's MLP (ReLU); ``[]`` gives one linear layer."""
    temperature: float = Field(0.1, gt=0)
    """Softmax temperature :math:`\\tau` of the main task."""
    logq_correction: bool = False
    """Subtract the log-probability that item :math:`j` is a candidate of a batch from its
    logits (Yi et al., RecSys 2019): corrects the popularity bias of in-batch negatives. With
    :math:`p_j` its training frequency and :math:`B` rows, that is
    :math:`\\log(1 - (1 - p_j)^B)` for distinct candidates (``remove_accidental_hits``), else
    :math:`\\log p_j` per row."""
    remove_accidental_hits: bool = True
    """Candidates are the batch's *distinct* items, so a repeat of a row's own positive is
    never its negative (an "accidental hit"); false: every batch row's item is a candidate."""
    item_features: list[str] | None = None
    """Item feature tables of the dataset to feed the item tower (plus ``text``, derived by the
    sentence encoder when the dataset has no such table); None takes every item table, ``[]``
    gives the id-only tower."""
    user_features: list[str] | None = None
    """User feature tables for the query tower; None takes every user table."""
    use_user_id: bool = True
    """Feed the user id embedding to the query tower."""
    history: bool = False
    """Feed the mean embedding of the user's training items to the query tower (the target
    item of a training pair is left out of its own bag)."""
    text_fields: list[str] | None = None
    """Item fields encoded into a derived ``text`` feature; None takes the dataset card's."""
    ssl: Literal["none", "rfm", "cfm"] = "cfm"
    """Self-supervised task on the item tower: off, random or correlated feature masking."""
    ssl_weight: float = Field(0.5, ge=0.0)
    """:math:`\\alpha` in :math:`\\mathcal{L} = \\mathcal{L}_\\text{main} +
    \\alpha\\mathcal{L}_\\text{ssl}`."""
    ssl_temperature: float = Field(0.1, gt=0)
    """Softmax temperature of the contrastive task between the two views."""
    ssl_batch_size: int | None = Field(None, gt=0)
    """Items per SSL batch, sampled uniformly from the corpus; None: the main batch's size."""
    ssl_value_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Probability of dropping each value of a multi-valued feature in an SSL view."""
    ssl_mask_size: Literal["seed_plus_half", "half"] = "seed_plus_half"
    """Size of the masked set :math:`F_m` of :math:`k` item features: the paper's formula,
    the seed and its :math:`\\lfloor k/2 \\rfloor` neighbours, or ``half``,
    :math:`\\lfloor k/2 \\rfloor` in all, the paper's stated aim of two views of about equal
    size (they differ for few features: 3 and 1 of 4 against 2 and 2); RFM masks as many.
    See :mod:`recsys.models.ssl_masks`."""
    cfm_clusters: int = Field(16, ge=2)
    """Clusters (k-means) that discretise a dense feature for the mutual information."""


# ---------------------------------------------------------------------------------------------
# feature slots: one embedding per feature, rows gathered in torch
# ---------------------------------------------------------------------------------------------


def csr_tensors(csr: sp.csr_array) -> tuple[Tensor, Tensor]:
    """A CSR matrix's ``indptr`` and ``indices`` as int64 tensors (the pair :func:`csr_gather`
    reads)."""
    return (
        torch.from_numpy(csr.indptr.astype(np.int64)),
        torch.from_numpy(csr.indices.astype(np.int64)),
    )


def csr_gather(indptr: Tensor, indices: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""The stored entries of ``rows`` of a CSR matrix: (owner position, column, bag offsets).

    With :math:`s_b, \ell_b` the start and length of row ``rows[b]`` and
    :math:`o_b = \sum_{c<b}\ell_c`, entry :math:`j` of the output is ``indices[s_b + j - o_b]``;
    ``offsets`` are the :math:`o_b` (the format ``F.embedding_bag`` wants).
    """
    starts = indptr.index_select(0, rows)
    lengths = indptr.index_select(0, rows + 1) - starts
    offsets = torch.cumsum(lengths, 0) - lengths
    owner = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths)
    total = owner.numel()
    positions = torch.arange(total, device=rows.device) + (starts - offsets).index_select(0, owner)
    return owner, indices.index_select(0, positions), offsets


def bag_mean(
    weight: Tensor, owner: Tensor, values: Tensor, offsets: Tensor, keep: Tensor | None = None
) -> Tensor:
    r"""Mean of the embeddings of each bag's kept values, :math:`\frac{1}{|S_b|}\sum_{v\in S_b}
    \mathbf{e}_v` (zeros for an empty bag). ``keep`` (float 0/1 per value) drops values."""
    w = torch.ones(len(values), device=weight.device) if keep is None else keep
    w = w.to(weight.dtype)  # embedding_bag wants the table's dtype (float64 after .double())
    count = torch.zeros(len(offsets), dtype=w.dtype, device=weight.device).index_add_(0, owner, w)
    w = w / count.clamp_min(1.0).index_select(0, owner)
    return F.embedding_bag(values, weight, offsets, mode="sum", per_sample_weights=w)


class CategoricalFeature(nn.Module):
    """One code per row (``-1`` missing, given its own embedding)."""

    kind = "categorical"

    def __init__(self, codes: np.ndarray, n_values: int, dim: int) -> None:
        super().__init__()
        codes = np.where(np.asarray(codes) >= 0, codes, n_values).astype(np.int64)
        self.register_buffer("codes", torch.from_numpy(codes), persistent=False)
        self.embedding = nn.Embedding(n_values + 1, dim)

    def forward(self, rows: Tensor, value_dropout: float = 0.0) -> Tensor:
        return self.embedding(self.codes.index_select(0, rows))


class MultiHotFeature(nn.Module):
    """A set of values per row; the mean of their embeddings, with optional value dropout."""

    kind = "multi_hot"

    def __init__(self, matrix: sp.csr_array, dim: int) -> None:
        super().__init__()
        csr = sp.csr_array(matrix)
        csr.sum_duplicates()
        indptr, indices = csr_tensors(csr)
        self.register_buffer("indptr", indptr, persistent=False)
        self.register_buffer("indices", indices, persistent=False)
        self.embedding = nn.Embedding(max(csr.shape[1], 1), dim)

    def forward(self, rows: Tensor, value_dropout: float = 0.0) -> Tensor:
        owner, values, offsets = csr_gather(self.indptr, self.indices, rows)
        keep = None
        if value_dropout > 0:
            keep = (torch.rand(len(values), device=values.device) >= value_dropout).float()
        return bag_mean(self.embedding.weight, owner, values, offsets, keep)


class DenseFeature(nn.Module):
    """Dense values per row (standardised per column, see :func:`standardise`), projected
    linearly."""

    kind = "dense"

    def __init__(self, values: np.ndarray, dim: int) -> None:
        super().__init__()
        x = standardise(values)
        self.register_buffer("values", torch.from_numpy(x), persistent=False)
        self.projection = nn.Linear(x.shape[1], dim)

    def forward(self, rows: Tensor, value_dropout: float = 0.0) -> Tensor:
        return self.projection(self.values.index_select(0, rows))


def standardise(values: np.ndarray) -> np.ndarray:
    """``values`` (``[n_rows, width]``) standardised per column, :math:`(x - \\mu) / \\sigma`
    (a column with :math:`\\sigma = 0` is only centred), as ``float32``.

    The statistics are computed in float32; a column whose mean or standard deviation
    overflows float32 there (values from about :math:`10^{19} / \\sqrt{n}` up, whose summed
    squares do not fit; float32 gave NaN or a column of zeros) is standardised in float64
    instead, as a column of exact zeros when it is constant. Other columns are untouched by
    that fallback, so ordinary features keep the bits of the float32 standardisation.
    """
    x = np.asarray(values, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = x.mean(0), x.std(0)
        out = (x - mean) / np.where(std > 0, std, 1.0)
    overflow = ~(np.isfinite(mean) & np.isfinite(std))
    if overflow.any():
        wide = x[:, overflow].astype(np.float64)
        spread = wide.max(0) > wide.min(0)
        wide_std = np.where(spread, wide.std(0), 1.0)
        out[:, overflow] = np.where(spread, (wide - wide.mean(0)) / wide_std, 0.0)
    return np.ascontiguousarray(out, dtype=np.float32)


def _mlp(n_in: int, hidden: list[int], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


@dataclass
class _Table:
    name: str
    kind: str
    data: np.ndarray | sp.csr_array
    n_values: int = 0


def _tables(
    dataset: Dataset | None,
    names: list[str] | None,
    role: Literal["item", "user"],
    n_rows: int,
    text_fields: list[str] | None,
) -> list[_Table]:
    """The feature tables ``names`` of ``dataset``'s items or users, checked."""
    key = f"model.{role}_features"
    if dataset is None:
        if names:
            raise ConfigError(
                f"{key}={names} needs the dataset's features: call setup(train, dataset)"
            )
        return []
    available = dataset.item_features if role == "item" else dataset.user_features
    if names is None:
        names = list(available)
    if len(set(names)) != len(names):
        raise ConfigError(f"{key} lists a feature twice: {names}")
    if role == "item" and ITEM_ID in names:
        raise ConfigError(f"{key}: {ITEM_ID!r} is always used; leave it out of the list")
    if role == "item" and text_fields is not None and "text" not in names:
        log.warning("model.text_fields=%s has no effect: 'text' is not in %s", text_fields, key)
    elif role == "item" and text_fields is not None and "text" in available:
        log.warning(
            "model.text_fields=%s has no effect: dataset %r has a 'text' table, used as it is",
            text_fields,
            dataset.name,
        )
    out = []
    for name in names:
        table: FeatureTable | None = available.get(name)
        if table is None and role == "item" and name == "text":
            table = _derived_text(dataset, text_fields)
        if table is None:
            known = list(available)
            if role == "item" and "text" not in known:
                known.append("text (derived)")
            raise ConfigError(
                f"unknown {role} feature {name!r} for dataset {dataset.name!r} (key {key}); "
                f"available: {', '.join(known) or 'none'}"
            )
        if table.n_rows != n_rows:
            raise DataError(
                f"{role} feature {name!r} of dataset {dataset.name!r} has {table.n_rows} rows "
                f"but the training matrix has {n_rows} {role}s"
            )
        if table.kind == "categorical":
            n_values = len(table.vocab or [])
            codes = _categorical_codes(table, n_values, f"{dataset.name}: {role}")
            out.append(_Table(name, "categorical", codes, n_values))
        elif table.kind == "multi_hot":
            # a stored 0 is no value (as for BM3's modalities): not in the bag, nor in CFM's code
            matrix = sp.csr_array(table.values, copy=True)
            matrix.sum_duplicates()
            matrix.eliminate_zeros()
            out.append(_Table(name, "multi_hot", matrix))
        else:
            values = np.asarray(table.values, dtype=np.float32)
            if values.ndim == 1:
                values = values[:, None]
            bad = ~np.isfinite(values).all(axis=1)
            if bad.any():
                raise DataError(
                    f"{dataset.name}: {role} feature {name!r} has a NaN or infinite value in "
                    f"row {int(np.flatnonzero(bad)[0])} ({int(bad.sum())} rows)"
                )
            out.append(_Table(name, "dense", values))
    return out


def _derived_text(dataset: Dataset, text_fields: list[str] | None) -> FeatureTable:
    """The ``text`` feature encoded from the items' text fields, or a :class:`ConfigError`
    in this model's keys (``model.item_features``, ``model.text_fields``)."""
    from recsys.data.features import available_modalities, card_text_fields, item_modalities

    if "text" not in available_modalities(dataset, text_fields):
        fields = text_fields if text_fields is not None else card_text_fields(dataset.name)
        source = "model.text_fields" if text_fields is not None else "its card's text_fields"
        raise ConfigError(
            f"model.item_features lists 'text', but dataset {dataset.name!r} has no text table "
            f"and cannot derive one: {source} is {fields or 'empty'}, and the text fields "
            "must all be columns of its item file; set model.text_fields to item fields "
            f"(item feature tables: {', '.join(dataset.item_features) or 'none'})"
        )
    matrix = item_modalities(dataset, ["text"], text_fields=text_fields)["text"]
    return FeatureTable("text", "dense", matrix)


def _categorical_codes(table: FeatureTable, n_values: int, owner: str) -> np.ndarray:
    """Integer codes in ``[-1, n_values)`` (``-1`` missing), or a :class:`DataError` naming
    the first bad row: an out-of-range code would fail deep inside an embedding lookup."""
    values = np.asarray(table.values)
    if values.ndim != 1:
        raise DataError(f"{owner} feature {table.name!r}: categorical codes must be one per row")
    bad = (values < -1) | (values >= n_values)
    if not np.issubdtype(values.dtype, np.integer):
        bad |= ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{owner} feature {table.name!r} has code {values[row].item()} in row {row}; codes "
            f"must be integers from -1 (missing) to {n_values - 1} (its vocabulary has "
            f"{n_values})"
        )
    return values.astype(np.int64)


def _slot(table: _Table, dim: int) -> nn.Module:
    if table.kind == "categorical":
        return CategoricalFeature(np.asarray(table.data), table.n_values, dim)
    if table.kind == "multi_hot":
        return MultiHotFeature(table.data, dim)
    return DenseFeature(np.asarray(table.data), dim)


def _codes(table: _Table, n_clusters: int) -> np.ndarray:
    """One discrete code per row, for the mutual information of CFM."""
    if table.kind == "categorical":
        return np.asarray(table.data, dtype=np.int64)
    if table.kind == "multi_hot":
        return multi_hot_codes(table.data)
    return dense_codes(np.asarray(table.data), n_clusters)


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------


@register
class TwoTower(DotProductScorer, Recommender):
    r"""Two-tower retrieval with self-supervised item-tower training (Yao et al., CIKM 2021).

    From `"Self-supervised Learning for Large-scale Item Recommendations"
    <https://arxiv.org/abs/2007.12865>`_.

    Each feature :math:`f` of an item (its id, categorical, multi-valued and dense features)
    gets an embedding :math:`\mathbf{e}_f` (a lookup, the mean of a bag of lookups, or a linear
    projection); the tower is an MLP over their concatenation, normalised,
    :math:`\mathbf{x}_i = \mathrm{MLP}_I([\mathbf{e}_{f_1}; \dots; \mathbf{e}_{f_k}]) /
    \lVert\cdot\rVert`, and likewise :math:`\mathbf{q}_u` over the user's id, features and
    optionally the mean embedding of their training items. With cosine similarity
    :math:`s(\mathbf{q}, \mathbf{x}) = \mathbf{q}^\top\mathbf{x}` and a batch of positive pairs,

    .. math::
        \mathcal{L}_\text{main} = -\frac{1}{B}\sum_{b=1}^{B}\log
            \frac{\exp(s(\mathbf{q}_b, \mathbf{x}_b)/\tau - c_b)}
                 {\sum_{j=1}^{B}\exp(s(\mathbf{q}_b, \mathbf{x}_j)/\tau - c_j)},

    with :math:`c_j` the log-probability of drawing :math:`j` under ``logq_correction``, else 0;
    the candidates :math:`j` are the batch's distinct items (``remove_accidental_hits``: a repeat
    of the row's own item is never its negative), else every row's item. With :math:`p_j` the
    training frequency of item :math:`j`, a row's item is :math:`j` with probability
    :math:`p_j`, so every row's item as a candidate has :math:`c_j = \log p_j`, and :math:`j`
    among the distinct items of :math:`B` rows has :math:`c_j = \log(1 - (1 - p_j)^B)`: the
    per-batch hit probability that Yi et al. estimate by streaming, which saturates at 1 for
    the most popular items (:math:`\log p_j` would over-correct them by up to
    :math:`\log B`).

    The SSL task draws :math:`N` items uniformly from the corpus (not from the power-law
    training pairs) and a masked set :math:`F_m` per batch (RFM: random; CFM: a seed feature
    and the features of highest chance-adjusted mutual information with it). View one replaces
    the features in :math:`F_m` by learned per-feature default embeddings
    :math:`\mathbf{d}_f`, view two those in :math:`F \setminus F_m`; values of multi-valued
    features are also dropped with probability ``ssl_value_dropout`` in each view. With
    :math:`\mathbf{z}_i, \mathbf{z}'_i` the item tower's outputs of the two views (the same
    tower and embeddings as the main task),

    .. math::
        \mathcal{L}_\text{ssl} = -\frac{1}{N}\sum_{i=1}^{N}\log
            \frac{\exp(s(\mathbf{z}_i, \mathbf{z}'_i)/\tau')}
                 {\sum_{j=1}^{N}\exp(s(\mathbf{z}_i, \mathbf{z}'_j)/\tau')},\qquad
        \mathcal{L} = \mathcal{L}_\text{main} + \alpha\,\mathcal{L}_\text{ssl}.

    The trainer logs the terms as ``main`` and ``ssl`` (already multiplied by :math:`\alpha`).
    One mask pattern serves the whole SSL batch, as in the paper: with a pattern per item the
    pattern itself could identify the positive pair. The SSL term needs at least two item
    features (with the id alone there is nothing to mask) and is left out otherwise.

    Scores are :math:`\hat{y}_{ui} = \mathbf{q}_u^\top\mathbf{x}_i`, with the item tower run
    once over the catalogue per :meth:`scorer` call.

    Shapes:
        - loss: batch ``user``, ``item`` :math:`[B]` (positive pairs)
        - score: users :math:`[B]` -> :math:`[B, |\mathcal{I}|]`
    """

    name = "twotower"
    config_class = TwoTowerConfig
    batch_kind = "pairs"
    # CFM's groups and mutual information come from the (fingerprinted) item features through
    # k-means; scoring never reads them
    unfingerprinted_buffers = frozenset({"cfm_table", "feature_mi"})

    # -- construction -----------------------------------------------------------------------
    def build(self, train: sp.csr_array, dataset: Dataset | None) -> None:
        cfg = self.config
        dim = cfg.feature_dim
        if dataset is not None and dataset.n_items != self.n_items:
            raise DataError(
                f"dataset {dataset.name!r} has {dataset.n_items} items but the training matrix "
                f"has {self.n_items}"
            )
        item_tables = _tables(dataset, cfg.item_features, "item", self.n_items, cfg.text_fields)
        user_tables = _tables(dataset, cfg.user_features, "user", self.n_users, None)
        self.item_feature_names = [ITEM_ID, *(t.name for t in item_tables)]
        self.user_feature_names = [t.name for t in user_tables]

        self.item_embedding = nn.Embedding(self.n_items, dim)
        self.item_encoders = nn.ModuleDict({t.name: _slot(t, dim) for t in item_tables})
        n_item_slots = len(self.item_feature_names)
        self.default_embedding = nn.Parameter(torch.zeros(n_item_slots, dim))
        self.item_mlp = _mlp(n_item_slots * dim, list(cfg.hidden_sizes), cfg.embedding_size)

        n_query_slots = 0
        if cfg.use_user_id:
            self.user_embedding = nn.Embedding(self.n_users, dim)
            n_query_slots += 1
        self.user_encoders = nn.ModuleDict({t.name: _slot(t, dim) for t in user_tables})
        n_query_slots += len(user_tables)
        if cfg.history:
            self.history_embedding = nn.Embedding(self.n_items, dim)
            n_query_slots += 1
        if n_query_slots == 0:
            raise ConfigError(
                "the query tower has no input: set model.use_user_id=true, model.history=true, "
                "or give model.user_features"
            )
        self.query_mlp = _mlp(n_query_slots * dim, list(cfg.hidden_sizes), cfg.embedding_size)

        csr = sp.csr_array(train)
        csr.sort_indices()
        indptr, indices = csr_tensors(csr)
        self.register_buffer("history_indptr", indptr, persistent=False)
        self.register_buffer("history_indices", indices, persistent=False)
        counts = np.bincount(csr.indices, minlength=self.n_items).astype(np.float64)
        log_q = np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0))
        self.register_buffer("log_q", torch.from_numpy(log_q.astype(np.float32)), persistent=False)

        # the masked set of CFM for every seed feature, from the item feature columns
        k = n_item_slots
        groups = np.zeros((k, k), dtype=bool)
        mi = np.zeros((k, k))
        if cfg.ssl == "cfm" and k >= 2:
            codes = np.stack(
                [np.arange(self.n_items), *(_codes(t, cfg.cfm_clusters) for t in item_tables)],
                axis=1,
            )
            mi = adjusted_mutual_information(codes)
            groups = cfm_groups(mi, cfg.ssl_mask_size)
        self.register_buffer("cfm_table", torch.from_numpy(groups), persistent=False)
        self.register_buffer(
            "feature_mi", torch.from_numpy(mi.astype(np.float32)), persistent=False
        )
        if cfg.ssl != "none" and cfg.ssl_weight > 0 and k < 2:
            log.warning(
                "twotower: SSL (%s) needs at least two item features to mask; the item tower "
                "has only %s, so the SSL term is off",
                cfg.ssl,
                self.item_feature_names,
            )
        log.info(
            "twotower: item features %s, query features %s, ssl=%s",
            self.item_feature_names,
            (["user_id"] if cfg.use_user_id else [])
            + self.user_feature_names
            + (["history"] if cfg.history else []),
            cfg.ssl if self.ssl_active else "off",
        )

    def reset_parameters(self) -> None:
        std = 0.1
        for module in self.modules():
            if module is self:
                continue
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, nn.Linear):
                module.reset_parameters()
            elif hasattr(module, "reset_parameters") and not list(module.children()):
                module.reset_parameters()  # a swapped-in id module (DNIS)
        nn.init.normal_(self.default_embedding, std=std)

    def id_embeddings(self) -> dict[str, str]:
        """Role -> attribute name of the id embedding module (read only through the module,
        so a search such as DNIS can swap it)."""
        out = {"item": "item_embedding"}
        if self.config.use_user_id:
            out["user"] = "user_embedding"
        return out

    @property
    def ssl_active(self) -> bool:
        """Whether the SSL term is computed: a task chosen, a positive weight, >= 2 features."""
        cfg = self.config
        return cfg.ssl != "none" and cfg.ssl_weight > 0 and len(self.item_feature_names) >= 2

    # -- towers -----------------------------------------------------------------------------
    def item_inputs(
        self, items: Tensor, mask: Tensor | None = None, value_dropout: float = 0.0
    ) -> Tensor:
        r"""The item tower's input embeddings ``[B, k, feature_dim]``, features in the order of
        :attr:`item_feature_names`; where ``mask`` (``bool [k]`` or ``[B, k]``) is true the
        feature's default embedding :math:`\mathbf{d}_f` replaces it."""
        slots = [self.item_embedding(items)]
        slots += [f(items, value_dropout) for f in self.item_encoders.values()]
        x = torch.stack(slots, dim=1)
        if mask is not None:
            m = mask.view(1, -1, 1) if mask.dim() == 1 else mask.unsqueeze(-1)
            x = torch.where(m, self.default_embedding.unsqueeze(0), x)
        return x

    def item_tower(
        self, items: Tensor, mask: Tensor | None = None, value_dropout: float = 0.0
    ) -> Tensor:
        """L2-normalised item embeddings ``[B, embedding_size]``."""
        x = self.item_inputs(items, mask, value_dropout)
        return F.normalize(self.item_mlp(x.flatten(1)), dim=-1)

    def query_tower(
        self,
        users: Tensor,
        history: tuple[Tensor, Tensor] | None = None,
        exclude_items: Tensor | None = None,
    ) -> Tensor:
        """L2-normalised query embeddings ``[B, embedding_size]``.

        ``history`` is a CSR ``(indptr, indices)`` pair whose rows are the users' known items
        (default: the training rows); ``exclude_items[b]`` is left out of row ``b``'s bag.
        """
        slots = []
        if self.config.use_user_id:
            slots.append(self.user_embedding(users))
        slots += [f(users) for f in self.user_encoders.values()]
        if self.config.history:
            indptr, indices = history or (self.history_indptr, self.history_indices)
            owner, values, offsets = csr_gather(indptr, indices, users)
            keep = None
            if exclude_items is not None:
                keep = (values != exclude_items.index_select(0, owner)).float()
            slots.append(bag_mean(self.history_embedding.weight, owner, values, offsets, keep))
        x = torch.cat(slots, dim=1)
        return F.normalize(self.query_mlp(x), dim=-1)

    # -- training ---------------------------------------------------------------------------
    def sample_ssl_items(self, n: int) -> Tensor:
        """``n`` items drawn uniformly (with replacement) from the whole corpus."""
        return torch.randint(0, self.n_items, (n,), device=self.device)

    def ssl_mask(self) -> Tensor:
        r"""The masked set :math:`F_m` of view one, ``bool [k]`` (view two masks the rest).

        CFM: the precomputed group of a uniformly drawn seed feature. RFM: a random subset of
        the same size (:func:`recsys.models.ssl_masks.masked_set_size`).
        """
        k = len(self.item_feature_names)
        if self.config.ssl == "cfm":
            seed = int(torch.randint(0, k, (1,)).item())
            return self.cfm_table[seed].clone()
        chosen = torch.randperm(k)[: masked_set_size(k, self.config.ssl_mask_size)]
        mask = torch.zeros(k, dtype=torch.bool)
        mask[chosen] = True
        return mask.to(self.device)

    def ssl_loss(self, n: int) -> Tensor:
        r""":math:`\mathcal{L}_\text{ssl}` (not weighted) on ``n`` uniformly sampled items.

        Repeats in the sample are merged (a repeat would be its own negative); the distinct
        items of a uniform sample are still uniform over the corpus.
        """
        items = torch.unique(self.sample_ssl_items(n))
        mask = self.ssl_mask()
        p = self.config.ssl_value_dropout
        z1 = self.item_tower(items, mask, p) / self.config.ssl_temperature
        z2 = self.item_tower(items, ~mask, p)
        labels = torch.arange(len(items), device=items.device)
        return F.cross_entropy(z1 @ z2.T, labels)

    def main_logits(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        r"""Logits :math:`s(\mathbf{q}_b, \mathbf{x}_j)/\tau - c_j` ``[B, C]`` over the
        candidates (the batch's distinct items, or every row's item) and each row's label."""
        cfg = self.config
        users, items = batch["user"], batch["item"]
        q = self.query_tower(users, exclude_items=items if cfg.history else None)
        q = q / cfg.temperature  # [B, d]: cheaper than dividing [B, C] logits
        # one tower pass per distinct item of the batch
        distinct, inverse = torch.unique(items, return_inverse=True)
        x = self.item_tower(distinct)
        if cfg.remove_accidental_hits:
            candidates, labels = distinct, inverse
        else:
            x = x.index_select(0, inverse)
            candidates, labels = items, torch.arange(len(items), device=items.device)
        logits = q @ x.T
        if cfg.logq_correction:
            log_q = self.candidate_log_q(candidates, len(items), cfg.remove_accidental_hits)
            logits = logits - log_q.unsqueeze(0)
        return logits, labels

    def candidate_log_q(self, candidates: Tensor, batch_rows: int, distinct: bool) -> Tensor:
        r""":math:`c_j` of :meth:`main_logits` ``[C]``: :math:`\log p_j` per row's item, or for
        distinct candidates :math:`\log(1 - (1 - p_j)^B)`, computed as
        :math:`\log(-\operatorname{expm1}(B \operatorname{log1p}(-p_j)))` in float64."""
        log_p = self.log_q.index_select(0, candidates)
        if not distinct:
            return log_p
        p = log_p.double().exp()
        return torch.log(-torch.expm1(batch_rows * torch.log1p(-p))).to(log_p.dtype)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits, labels = self.main_logits(batch)
        terms = {"main": F.cross_entropy(logits, labels)}
        terms.update(self._ssl_terms(len(labels)))
        return terms

    def example_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-pair batch-softmax loss ``[B]`` and the (weighted) SSL term."""
        logits, labels = self.main_logits(batch)
        return F.cross_entropy(logits, labels, reduction="none"), self._ssl_terms(len(labels))

    def _ssl_terms(self, batch_size: int) -> dict[str, Tensor]:
        cfg = self.config
        if not self.ssl_active:
            return {}
        return {"ssl": cfg.ssl_weight * self.ssl_loss(cfg.ssl_batch_size or batch_size)}

    # -- scoring ----------------------------------------------------------------------------
    @torch.no_grad()
    def item_representations(self) -> Tensor:
        """The item tower's output for every item, ``[n_items, embedding_size]``."""
        items = torch.arange(self.n_items, device=self.device)
        return torch.cat([self.item_tower(c) for c in items.split(_CHUNK)])

    @torch.no_grad()
    def user_representations(self, history: sp.csr_array | None = None) -> Tensor:
        """The query tower's output for every user, ``[n_users, embedding_size]``."""
        hist = self._history(history)
        users = torch.arange(self.n_users, device=self.device)
        return torch.cat([self.query_tower(c, hist) for c in users.split(_CHUNK)])

    def _history(self, history: sp.csr_array | None) -> tuple[Tensor, Tensor] | None:
        if history is None or not self.config.history:
            return None
        csr = sp.csr_array(history)
        if csr.shape[1] != self.n_items:
            raise DataError(f"history has {csr.shape[1]} items; the model has {self.n_items}")
        if csr.shape[0] != self.n_users:  # rows are read by user index, like the id table
            raise DataError(f"history has {csr.shape[0]} users; the model has {self.n_users}")
        indptr, indices = csr_tensors(csr)
        return indptr.to(self.device), indices.to(self.device)

    def scorer(self, history: sp.csr_array | None = None) -> ScoreFn:
        self.check_fitted()
        items_r = self.item_representations()  # once per scorer
        hist = self._history(history)

        def score(users: Tensor) -> Tensor:
            with torch.no_grad():
                return self.query_tower(users.to(items_r.device), hist) @ items_r.T

        return score

    @property
    def fold_in(self) -> bool:  # type: ignore[override]
        """Without the user id (``use_user_id=false``) the query tower reads only what any user
        brings, features and history rows, so users it never trained on can be scored
        (``split.strategy=heldout_users``)."""
        return not self.config.use_user_id

    def representations(self, history: sp.csr_array | None = None) -> dict[str, Tensor]:
        """``user``/``item``: the towers' normalised outputs that scores are computed from
        (users from ``history`` rows when given, as :meth:`scorer`); ``item_id``: the item id
        embeddings (the tower's first input)."""
        self.check_fitted()
        with torch.no_grad():
            ids = torch.arange(self.n_items, device=self.device)
            return {
                "user": self.user_representations(history),
                "item": self.item_representations(),
                "item_id": self.item_embedding(ids),
            }
