"""DNIS keeps its base's fold-in: around a two-tower without the user id (only the item table
is searched) it trains under ``split.strategy=heldout_users`` and scores, evaluates and
exports held-out users from their fold-in rows, as the two-tower does alone."""

from __future__ import annotations

import pytest

from recsys.cli import main
from recsys.experiment import load_run
from recsys.models.registry import create_model
from tests.cli.heldout_checks import (
    check_evaluate_reproduces_the_run,
    check_export_encodes_held_out_users,
    check_probe_base_metrics_equal_the_runs,
)

DATA = "synthetic-200x80x3000"
SETTINGS = [
    "train.epochs=5",
    "train.num_threads=1",
    "split.strategy=heldout_users",
    "split.heldout_users=[0.2, 0.2]",
    "model.base=twotower",
    "model.base_params.use_user_id=false",
    "model.base_params.history=true",
    "model.base_params.ssl=none",
    "model.warm_start_epochs=2",
    "model.search_epochs=1",
    "run_name=d",
]


def _args(out, settings):
    args = ["train", "--model", "dnis", "--dataset", DATA, "-o", str(out), "--quiet"]
    return [*args, "--no-tracking", *(x for s in settings for x in ("--set", s))]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dnis-heldout")
    assert main(_args(out, SETTINGS)) == 0
    return out / "d"


def test_dnis_folds_in_when_its_base_does():
    assert create_model("dnis", base="twotower", base_params={"use_user_id": False}).fold_in
    assert not create_model("dnis", base="twotower").fold_in
    assert not create_model("dnis", base="bpr").fold_in


def test_the_run_scores_held_out_users_and_evaluate_reproduces_it(run, capsys):
    check_evaluate_reproduces_the_run(run, capsys)
    # only the item table was searched and pruned: the two-tower has no user table here
    assert set(load_run(run, "cpu")[3].block_order) == {"item"}


def test_export_encodes_held_out_users_from_their_fold_in_rows(run, tmp_path):
    check_export_encodes_held_out_users(run, tmp_path / "emb")


def test_probe_base_metrics_equal_the_runs(run, tmp_path):
    check_probe_base_metrics_equal_the_runs(run, tmp_path / "p")


def test_a_base_with_its_user_id_is_still_refused(tmp_path, capsys):
    settings = [s for s in SETTINGS if "use_user_id" not in s]
    assert main(_args(tmp_path, settings)) == 2
    assert "'dnis' does not fold in" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
