"""Bad settings of the diffusion models are one-line CLI errors naming the key (exit 2),
never a traceback or a schedule that silently means something else."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.cli import main

DATA = "synthetic-120x80x2400"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("data-cache")))
    monkeypatch.delenv("RECSYS_TRACKING_URI", raising=False)


def _train(tmp_path: Path, *args: str) -> int:
    return main(
        [
            "train",
            "--dataset",
            DATA,
            "-o",
            str(tmp_path / "runs"),
            "--no-tracking",
            "--quiet",
            "--set",
            "train.epochs=1",
            *args,
        ]
    )


@pytest.mark.parametrize(
    ("model", "setting", "key"),
    [
        # a ValueError from build(): a traceback and exit 3
        ("ldiffrec", "model.latent_size=1", "model.latent_size"),
        # lambda_t = max(decayed 0.03, 1) = 1: no decay at all, silently
        ("ldiffrec", "model.diffusion_weight_floor=1", "model.diffusion_weight_floor"),
        # "loss became inf" (exit 3)
        ("ldiffrec", "model.diffusion_weight=inf", "model.diffusion_weight"),
        ("ldiffrec", "model.kl_cap=inf", "model.kl_cap"),
        # the Huber loss with delta = inf is half the squared error: trained, silently
        ("diffrec_student", "model.huber_delta=inf", "model.huber_delta"),
    ],
)
def test_bad_value_is_a_one_line_error_naming_the_key(tmp_path, capsys, model, setting, key):
    code = _train(tmp_path, "--model", model, "--set", setting)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and key in lines[0], err
    assert "Traceback" not in err
    assert not list((tmp_path / "runs").glob("*/metrics.json"))


def test_latent_size_equal_to_the_clusters_still_trains(tmp_path):
    # the bound is one latent unit per cluster, not more
    args = ["--model", "ldiffrec", "--set", "model.latent_size=3", "--set", "model.n_clusters=3"]
    assert _train(tmp_path, *args, "--set", "model.hidden_dims=[8]") == 0
