"""Fixtures of the probe tests: a planted-concept dataset and a LightGCN trained on it."""

from __future__ import annotations

import pytest

from recsys.data.dataset import Dataset
from recsys.data.split import Split, split_ratio
from recsys.data.synthetic import make_synthetic
from recsys.eval.evaluator import Evaluator
from recsys.models.lightgcn import LightGCN
from recsys.models.registry import create_model
from recsys.probe.pipeline import ProbeConfig, ProbeResult, run_probe
from recsys.train.trainer import TrainConfig, Trainer

PLANTED = {"n_users": 800, "n_items": 200, "n_interactions": 20000, "seed": 7}
"""Every user's taste follows 2 of 8 planted factors; items extreme on factor k carry the
``genre`` token ``f{k}+`` or ``f{k}-`` (16 planted concepts)."""
PLANTED_CONCEPTS = [f"genre=f{k}{sign}" for k in range(8) for sign in "+-"]


@pytest.fixture(scope="session")
def concept_data() -> tuple[Dataset, Split]:
    ds = make_synthetic(
        PLANTED["n_users"],
        PLANTED["n_items"],
        PLANTED["n_interactions"],
        temperature=0.25,
        seed=PLANTED["seed"],
        user_concepts=2,
        modalities={},
    )
    return ds, split_ratio(ds, (0.8, 0.1, 0.1), seed=1)


@pytest.fixture(scope="session")
def concept_lightgcn(concept_data) -> LightGCN:
    ds, split = concept_data
    model = create_model("lightgcn", embedding_size=32, n_layers=2)
    config = TrainConfig(
        epochs=20, learning_rate=0.01, batch_size=1024, num_threads=1, progress=False, seed=0
    )
    Trainer(model, split, config, Evaluator(topk=(10,), metrics=("ndcg",)), dataset=ds).fit()
    return model.eval()


@pytest.fixture(scope="session")
def concept_probe(concept_data, concept_lightgcn) -> ProbeResult:
    """The probe of the planted LightGCN with the default settings."""
    ds, split = concept_data
    config = ProbeConfig.model_validate({"train": {"progress": False}})
    return run_probe(concept_lightgcn, ds, split, config)
