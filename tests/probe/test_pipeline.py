"""`run_probe` in process: determinism, the report's JSON, and settings."""

from __future__ import annotations

import json

import pytest

from recsys.data.split import split_ratio
from recsys.data.synthetic import make_synthetic
from recsys.errors import ConfigError
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model
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
