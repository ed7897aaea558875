"""Bad settings of the diffusion models are one-line CLI errors naming the key (exit 2),
never a traceback or a schedule that silently means something else."""

from __future__ import annotations

import pytest

from recsys.cli import main
from recsys.testing import check_bad_setting_refused

DATA = "synthetic-120x80x2400"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("data-cache")))
    monkeypatch.delenv("RECSYS_TRACKING_URI", raising=False)


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
def test_bad_value_is_a_one_line_error_naming_the_key(tmp_path, model, setting, key):
    check_bad_setting_refused(model, setting, key, tmp_path)


def test_latent_size_equal_to_the_clusters_still_trains(tmp_path):
    # the bound is one latent unit per cluster, not more
    code = main(["train", "--model", "ldiffrec", "--dataset", DATA, "-o", str(tmp_path / "runs"),
                 "--no-tracking", "--quiet", "--set", "train.epochs=1",
                 "--set", "model.latent_size=3", "--set", "model.n_clusters=3",
                 "--set", "model.hidden_dims=[8]"])  # fmt: skip
    assert code == 0
