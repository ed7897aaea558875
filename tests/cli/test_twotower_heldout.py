"""A two-tower without the user id folds in users it never trained on: trained under
``split.strategy=heldout_users``, it is evaluated, probed and exported with held-out users
encoded from their fold-in rows, as it scores them."""

from __future__ import annotations

import pytest

from recsys.cli import main
from tests.cli.heldout_checks import (
    check_evaluate_reproduces_the_run,
    check_export_encodes_held_out_users,
    check_probe_base_metrics_equal_the_runs,
)

DATA = "synthetic-200x80x3000"
SETTINGS = [
    "train.epochs=2",
    "train.num_threads=1",
    "split.strategy=heldout_users",
    "split.heldout_users=[0.2, 0.2]",
    "model.use_user_id=false",
    "model.history=true",
    "model.ssl=none",
    "run_name=tt",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tt-heldout")
    args = ["train", "--model", "twotower", "--dataset", DATA, "-o", str(out), "--quiet"]
    assert main([*args, "--no-tracking", *(x for s in SETTINGS for x in ("--set", s))]) == 0
    return out / "tt"


def test_the_run_scores_held_out_users_and_evaluate_reproduces_it(run, capsys):
    check_evaluate_reproduces_the_run(run, capsys)


def test_export_encodes_held_out_users_from_their_fold_in_rows(run, tmp_path):
    check_export_encodes_held_out_users(run, tmp_path / "emb")


def test_probe_base_metrics_equal_the_runs(run, tmp_path):
    check_probe_base_metrics_equal_the_runs(run, tmp_path / "p")


def test_with_the_user_id_it_is_still_refused(tmp_path, capsys):
    args = ["train", "--model", "twotower", "--dataset", DATA, "-o", str(tmp_path), "--quiet"]
    code = main([*args, "--no-tracking", "--set", "split.strategy=heldout_users"])
    assert code == 2
    assert "'twotower' does not fold in" in capsys.readouterr().err
