"""Bad settings of the denoising wrappers are one-line CLI errors naming the key (exit 2),
never a traceback or a run whose diagnostics or loss are silently wrong."""

from __future__ import annotations

import pytest

from recsys.testing import check_bad_setting_refused


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("data-cache")))
    monkeypatch.delenv("RECSYS_TRACKING_URI", raising=False)


@pytest.mark.parametrize(
    ("model", "setting", "key"),
    [
        # NaN flagged nothing as noisy: drop precision and recall silently meaningless
        ("tce", "model.clean_min_rating=nan", "model.clean_min_rating"),
        # every weight exp(-inf * loss) = 0: a run that trained nothing and reported metrics
        ("rce", "model.beta=inf", "model.beta"),
        # inf * rate 0 = NaN drop count: "cannot convert float NaN to integer" (exit 3)
        ("protodenoise", "model.candidate_factor=inf", "model.candidate_factor"),
        # numpy refuses a negative seed: "expected non-negative integer" (exit 3)
        ("protodenoise", "model.seed=-1", "model.seed"),
        # the feature check named bm3's key model.modalities, not this model's
        ("protodenoise", "model.modality=text+sound", "(key model.modality)"),
        # an unknown base named the wrapper's own key, model.name, which the user got right
        ("tce", "model.base=nosuchmodel", "unknown model 'nosuchmodel' (key model.base)"),
        ("rce", "model.base=nosuchmodel", "unknown model 'nosuchmodel' (key model.base)"),
    ],
)
def test_bad_value_is_a_one_line_error_naming_the_key(tmp_path, model, setting, key):
    check_bad_setting_refused(model, setting, key, tmp_path)
