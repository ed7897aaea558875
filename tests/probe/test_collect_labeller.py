"""Probe sites of a frozen model, the external-labeller hook, and planted-concept data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.data.synthetic import make_synthetic, planted_factors
from recsys.errors import ConfigError
from recsys.probe.collect import (
    ProbeSiteError,
    collect_representations,
    resolve_site,
    site_kind,
)
from recsys.probe.labeller import FunctionLabeller, LatentEvidence, load_labeller, prompt


def test_sites_of_a_trained_lightgcn(concept_lightgcn):
    model = concept_lightgcn
    reps = collect_representations(model)
    assert sorted(reps) == ["item", "item_layer0", "user", "user_layer0"]
    assert all(not v.requires_grad for v in reps.values())
    assert not any(p.requires_grad for p in model.parameters())  # frozen
    user = resolve_site(model, reps, "user")
    assert user.kind == "user" and user.scoring and user.n == 800 and user.d == 32
    assert resolve_site(model, reps, "item").kind == "item"
    layer0 = resolve_site(model, reps, "user_layer0")
    assert not layer0.scoring  # the scorer reads the propagated embeddings only
    with pytest.raises(ProbeSiteError, match="its representations are: item, item_layer0"):
        resolve_site(model, reps, "tower")


def test_site_kind_from_name_or_rows():
    x = torch.zeros(5, 2)
    assert site_kind("user_tower", x, 9, 7) == "user"
    assert site_kind("hidden", x, 5, 7) == "user" and site_kind("hidden", x, 9, 5) == "item"
    with pytest.raises(ProbeSiteError, match="neither"):
        site_kind("hidden", x, 5, 5)
    assert issubclass(ProbeSiteError, ConfigError)


def test_load_labeller_forms():
    evidence = LatentEvidence(0, "user", "genre=Action", 0.9, [("genre=Action", 2.0, 4.0)])
    fn = load_labeller("tests.probe.fake_labeller:describe")
    assert isinstance(fn, FunctionLabeller) and fn.describe(evidence) == "LABEL<GENRE=ACTION>"
    assert load_labeller("tests.probe.fake_labeller:Shouting").describe(evidence) == (
        "GENRE=ACTION"
    )
    assert load_labeller(None) is None and load_labeller("") is None
    for spec, message in [
        ("nocolon", "must be of the form"),
        ("tests.probe.fake_labeller:missing", "has no attribute 'missing'"),
        ("tests.probe.fake_labeller:not_callable", "neither callable"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_labeller(spec)
    text = prompt(evidence)
    assert "genre=Action (2.0x, z=4.0)" in text and text.endswith("The latent responds to")


def test_planted_concept_users_are_sparse_and_leave_the_default_unchanged():
    dense_u, items, pop = planted_factors(50, 30, seed=4)
    sparse_u, items2, pop2 = planted_factors(50, 30, seed=4, user_concepts=2)
    assert np.array_equal(items, items2) and np.array_equal(pop, pop2)
    assert ((sparse_u != 0).sum(axis=1) == 2).all()
    assert (dense_u != 0).all()
    # affinities keep about unit variance
    u, i, _ = planted_factors(4000, 300, seed=1, user_concepts=2)
    assert float((u @ i.T).var()) == pytest.approx(1.0, rel=0.15)
    base = make_synthetic(60, 40, 600, seed=3)
    again = make_synthetic(60, 40, 600, seed=3, user_concepts=None)
    assert (base.interactions != again.interactions).nnz == 0
    concepts = make_synthetic(60, 40, 600, seed=3, user_concepts=1)
    assert (base.interactions != concepts.interactions).nnz > 0
    with pytest.raises(ConfigError, match="user_concepts"):
        planted_factors(5, 5, user_concepts=9)
