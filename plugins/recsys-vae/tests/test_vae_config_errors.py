"""Bad hyper-parameters of the plugin's models are one-line CLI errors naming the key (exit 2),
never a traceback, a NaN metric or a run that silently trains the wrong network."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.cli import main

DATA = "synthetic-120x80x2400"


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
def test_bad_value_is_a_one_line_error_naming_the_key(tmp_path, capsys, model, setting, key):
    code = _train(tmp_path, "--model", model, "--set", setting)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and key in lines[0], err
    assert "Traceback" not in err
    assert not list((tmp_path / "runs").glob("*/metrics.json"))


def test_ease_memory_error_states_the_need_it_compares(tmp_path, capsys):
    # 80 items need about 0.15 MB: "need about 0 MB, over 0.01" read as a contradiction
    assert _train(tmp_path, "--model", "ease", "--set", "model.memory_mb=0.01") == 2
    err = capsys.readouterr().err
    assert "model.memory_mb=0.01" in err
    assert "about 0.146 MB" in err
