"""L-DiffRec's two learning rates (the reference's lr1 for the autoencoder, lr2 for the latent
denoiser): ``train.learning_rate`` and ``model.denoiser_learning_rate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from recsys_diffusion import LDiffRec

from recsys.cli import main
from recsys.data.samplers import make_sampler
from recsys.testing import small_split
from recsys.train.trainer import TrainConfig, make_optimizer, train_step

DATA = "synthetic-120x80x2400"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("data-cache")))
    monkeypatch.delenv("RECSYS_TRACKING_URI", raising=False)


def _moves(model: LDiffRec, lr: float) -> tuple[float, float]:
    """Largest first-step change of the autoencoder's and of the denoiser's weights."""
    split = small_split()
    optimizer = make_optimizer(model, TrainConfig(learning_rate=lr))
    denoiser = {id(p) for p in model.denoiser.parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = next(make_sampler(model.batch_kind, split.train, 64).epoch(np.random.default_rng(0)))
    train_step(model, optimizer, batch)
    moved = {"auto": 0.0, "den": 0.0}
    for name, p in model.named_parameters():
        part = "den" if id(p) in denoiser else "auto"
        moved[part] = max(moved[part], (p.detach() - before[name]).abs().max().item())
    return moved["auto"], moved["den"]


def test_the_denoiser_steps_at_its_own_rate_and_the_autoencoder_at_the_trainers():
    torch.manual_seed(0)
    params = {"hidden_dims": [16], "latent_size": 24, "emb_size": 4}
    model = LDiffRec(**params, denoiser_learning_rate=1e-4).setup(small_split().train)
    auto, den = _moves(model, 1e-2)
    # Adam's first step moves an entry with a gradient by about its group's rate
    assert auto == pytest.approx(1e-2, rel=1e-3)
    assert den == pytest.approx(1e-4, rel=1e-3)
    torch.manual_seed(0)
    one_rate = LDiffRec(**params).setup(small_split().train)
    assert one_rate.parameter_groups() is None
    assert _moves(one_rate, 1e-2)[1] == pytest.approx(1e-2, rel=1e-3)


def test_the_cli_takes_the_denoiser_rate_and_keeps_it_in_the_run_config(tmp_path):
    out = tmp_path / "runs"
    settings = ["train.epochs=1", "run_name=lr2", "model.hidden_dims=[8]",
                "model.denoiser_learning_rate=1e-4"]  # fmt: skip
    args = ["train", "--model", "ldiffrec", "--dataset", DATA, "-o", str(out), "--no-tracking"]
    code = main([*args, "--quiet", *(x for s in settings for x in ("--set", s))])
    assert code == 0
    assert "denoiser_learning_rate: 0.0001" in (out / "lr2" / "config.yaml").read_text()
    assert json.loads((out / "lr2" / "metrics.json").read_text())["test"]["n_users"] > 0
    # the run's optimiser had the two groups (its state is in last.pt)
    state = torch.load(out / "lr2" / "checkpoints" / "last.pt", weights_only=False)
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [1e-3, 1e-4]
