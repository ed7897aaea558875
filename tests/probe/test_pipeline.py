"""`run_probe` in process: determinism, the report's JSON, and settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys.data.split import split_ratio
from recsys.data.synthetic import make_synthetic
from recsys.errors import ConfigError
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model
from recsys.probe.collect import collect_representations
from recsys.probe.concepts import build_attributes
from recsys.probe.pipeline import ProbeConfig, run_probe
from recsys.probe.report import SECTIONS, render_html, write_report
from recsys.train.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def small_bpr():
    ds = make_synthetic(240, 80, 4000, seed=3, modalities={})
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=0)
    model = create_model("bpr", embedding_size=16)
    config = TrainConfig(epochs=5, learning_rate=0.01, num_threads=1, progress=False)
    Trainer(model, split, config, Evaluator(topk=(10,), metrics=("ndcg",)), dataset=ds).fit()
    return model.eval(), ds, split


def _strip_times(obj):
    if isinstance(obj, dict):
        return {k: _strip_times(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_strip_times(v) for v in obj]
    return obj


def test_the_probe_is_deterministic(small_bpr):
    model, ds, split = small_bpr
    config = ProbeConfig.model_validate({"train": {"epochs": 4, "progress": False}})
    first = _strip_times(run_probe(model, ds, split, config).to_json())
    second = _strip_times(run_probe(model, ds, split, config).to_json())
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    reseeded = run_probe(model, ds, split, config.with_seed(1)).to_json()
    assert reseeded["latents"] != first["latents"]


def test_report_files_and_json_are_strict(small_bpr, tmp_path):
    model, ds, split = small_bpr
    config = ProbeConfig.model_validate({"train": {"epochs": 2, "progress": False}, "cards": 3})
    result = run_probe(model, ds, split, config, model_name="bpr-small")
    html_path, json_path = write_report(result, tmp_path / "r")
    data = json.loads(json_path.read_text())
    assert data["setup"]["model"] == "bpr-small" and data["setup"]["dataset"] == ds.name
    assert len(data["history"]) == 3 and len(data["cards"]) <= 3
    # the SAE has no held-out rows: its FVU column is the training FVU, named "fvu"
    assert "fvu" in data["history"][0] and "fvu_valid" not in data["history"][0]
    assert set(data["baselines"]) == {"untrained", "neurons"}
    assert "NaN" not in json_path.read_text() and "Infinity" not in json_path.read_text()
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "bpr-small" in page
    assert all(f'<section id="{sid}">' in page for sid, _ in SECTIONS)
    assert render_html(result).count("data:image/png;base64,") == page.count(
        "data:image/png;base64,"
    )


def test_config_sections_reject_unknown_keys_and_with_seed_sets_every_section():
    with pytest.raises(Exception, match="extra"):
        ProbeConfig.model_validate({"sae": {"kk": 1}})
    config = ProbeConfig().with_seed(9)
    assert {config.train.seed, config.concepts.seed, config.ablation.seed, config.itda.seed} == {9}
    with pytest.raises(ValueError):
        ProbeConfig(valid_metric="ndcg@10")


def test_k_above_the_latent_count_is_a_config_error(small_bpr):
    model, ds, split = small_bpr
    config = ProbeConfig.model_validate({"sae": {"k": 200, "expansion": 2}})
    with pytest.raises(ConfigError, match="sae.k=200 exceeds the 32 latents"):
        run_probe(model, ds, split, config)


def test_cli_help_states_the_config_defaults(capsys):
    from recsys.cli import main
    from recsys.probe.sae import SAEOptions, SAETrainConfig

    assert main(["probe", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    defaults = {
        "Active latents per instance": SAEOptions().k,
        "Latents per input dimension": SAEOptions().expansion,
        "Maximum SAE epochs": SAETrainConfig().epochs,
        "SAE mini-batch size": SAETrainConfig().batch_size,
        "SAE learning rate of Adam": SAETrainConfig().learning_rate,
    }
    for phrase, value in defaults.items():
        assert f"{phrase} (default {value:g})" in text, phrase


def test_another_selection_metric(small_bpr):
    model, ds, split = small_bpr
    config = ProbeConfig.model_validate(
        {
            "valid_metric": "mrr_at_5",
            "topk": [10],
            "train": {"epochs": 2, "progress": False},
            "itda": {"enabled": False},
            "baselines": False,
        }
    )
    result = run_probe(model, ds, split, config)
    assert result.quality["valid_metric"] == "mrr_at_5"
    assert "mrr_at_5" in result.quality["valid_sae"] and "ndcg_at_10" in result.quality["valid_sae"]
    assert "valid_mrr_at_5" in result.history[-1]


def test_seeds_outside_the_range_are_config_errors():
    # numpy refuses negative seeds and torch ones over 64 bits, deep inside the probe
    with pytest.raises(ConfigError, match="seed must be in 0..4294967295, got -1"):
        ProbeConfig().with_seed(-1)
    with pytest.raises(ValueError, match="seed"):
        ProbeConfig.model_validate({"ablation": {"seed": 2**70}})
    with pytest.raises(ValueError, match="finite"):
        ProbeConfig.model_validate({"train": {"weight_decay": float("inf")}})


def test_itda_compares_only_sites_of_the_probed_kind():
    # as many users as items: item sites have as many rows as the user site
    ds = make_synthetic(60, 60, 1200, seed=3, modalities={})
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=0)
    model = create_model("lightgcn", embedding_size=8, n_layers=1)
    config = TrainConfig(epochs=1, num_threads=1, progress=False)
    Trainer(model, split, config, Evaluator(topk=(10,), metrics=("ndcg",)), dataset=ds).fit()
    probe = ProbeConfig.model_validate(
        {"train": {"epochs": 1, "progress": False}, "sae": {"k": 2}, "baselines": False}
    )
    result = run_probe(model.eval(), ds, split, probe)
    # before: "site item" and "site item_layer0" were compared with the user site by row index
    assert [s["other"] for s in result.itda["similarity"]] == ["site user_layer0"]


def test_the_baseline_table_counts_against_the_configured_threshold(small_bpr):
    model, ds, split = small_bpr
    config = ProbeConfig.model_validate(
        {"train": {"epochs": 2, "progress": False}, "concepts": {"confidence_threshold": 0.6}}
    )
    page = render_html(run_probe(model, ds, split, config))
    assert "<th>confidence ≥ 0.6</th>" in page and "confidence ≥ 0.8" not in page


def test_concept_evidence_can_be_the_models_recommendations(concept_data, concept_lightgcn):
    ds, split = concept_data
    config = ProbeConfig.model_validate(
        {
            "train": {"epochs": 2, "progress": False},
            "concepts": {"evidence": "recommended", "evidence_k": 10},
            "baselines": False,
            "itda": {"enabled": False},
            "ablation": {"n_latents": 0},
            "cards": 0,
        }
    )
    result = run_probe(concept_lightgcn, ds, split, config)
    assert result.setup["evidence"] == "recommended"
    # a user's profile is the share of its top-10 recommendations (training items excluded)
    # that carry an attribute, so a one-attribute concept's base rate is the mean share
    recs, _ = Evaluator(topk=(10,), metrics=("ndcg",)).topk(
        concept_lightgcn.scorer_from(collect_representations(concept_lightgcn)),
        np.arange(split.shape[0]),
        10,
        exclude=[split.train],
    )
    attributes = build_attributes(ds, split.train, config.concepts)
    single = [c for c in result.concepts if len(c.attributes) == 1]
    assert single
    for c in single[:5]:
        carries = attributes.items[:, [attributes.names.index(c.attributes[0])]].toarray().ravel()
        assert c.base_rate == pytest.approx(carries[recs].mean(1).mean(), rel=1e-5)
        history = (split.train @ carries) / np.diff(split.train.indptr)
        assert c.base_rate != pytest.approx(history.mean(), rel=1e-3)


def test_latent_deciles_match_numpy_and_reach_report_json(concept_probe, tmp_path):
    """Each latent carries the deciles of its positive activations (RecSAE's decile stats),
    in report.json and in the page's latent table."""
    acts = concept_probe.latents
    n_active = (acts > 0).sum(0)
    j = int(np.argmax(n_active))
    assert n_active[j] >= 10
    expected = np.percentile(acts[acts[:, j] > 0, j].astype(np.float64), np.arange(10, 100, 10))
    got = concept_probe.concepts[j].activation_deciles
    assert got is not None and len(got) == 9
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    for c in concept_probe.concepts:
        if c.n_active == 0:
            assert c.activation_deciles is None
        else:
            assert np.all(np.diff(c.activation_deciles) >= 0)
            assert c.activation_deciles[0] > 0 and c.activation_deciles[-1] <= c.max_activation
    write_report(concept_probe, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    np.testing.assert_allclose(report["latents"][j]["activation_deciles"], expected, rtol=1e-6)
    assert "activation p10 / p50 / p90" in (tmp_path / "report.html").read_text()


def test_default_quality_grid_is_recsaes_5_10_20_50(concept_probe):
    assert ProbeConfig().topk == [5, 10, 20, 50]
    for part in ("valid_base", "valid_sae", "test_base", "test_sae"):
        for k in (5, 10, 20, 50):
            assert f"hit_at_{k}" in concept_probe.quality[part]
            assert f"ndcg_at_{k}" in concept_probe.quality[part]
    assert concept_probe.quality["valid_metric"] == "ndcg_at_10"
