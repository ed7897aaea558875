"""Bad hyper-parameters of the plugin's models are one-line CLI errors naming the key (exit 2),
never a traceback, a NaN metric or a run that silently trains the wrong network."""

from __future__ import annotations

import pytest

from recsys.testing import check_bad_setting_refused


@pytest.mark.parametrize(
    ("model", "setting", "key"),
    [
        # a zero width trained an encoder that ignores its input, and reported its metrics
        ("multvae", "model.hidden_dims=[0]", "model.hidden_dims"),
        ("multdae", "model.hidden_dims=[0]", "model.hidden_dims"),
        # a negative width was a torch traceback (exit 3)
        ("multdae", "model.hidden_dims=[-5]", "model.hidden_dims"),
        # beta = inf once annealed ("loss became inf", exit 3); an infinite penalty likewise
        ("multvae", "model.anneal_cap=inf", "model.anneal_cap"),
        ("multvae", "model.l2=inf", "model.l2"),
        # an infinite prior-variance floor trained and reported a flat prior without a word
        ("ardvae", "model.min_prior_var=inf", "model.min_prior_var"),
        # lambda = inf: every EASE weight is 0/0, "NaN scores" (exit 3)
        ("ease", "model.l2=inf", "model.l2"),
    ],
)
def test_bad_value_is_a_one_line_error_naming_the_key(tmp_path, model, setting, key):
    check_bad_setting_refused(model, setting, key, tmp_path)


def test_ease_memory_error_states_the_need_it_compares(tmp_path):
    # 80 items need about 0.15 MB: "need about 0 MB, over 0.01" read as a contradiction
    check_bad_setting_refused("ease", "model.memory_mb=0.01", "about 0.146 MB", tmp_path)
