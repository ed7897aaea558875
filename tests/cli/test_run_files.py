"""A run folder's files through the command line: strict JSON (a NaN metric is null, which
jq and JavaScript read), readable by other users as the umask allows (not 0o600), and
still read back by ``recsys train`` / ``evaluate`` / ``export``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from recsys.cli import cli
from tests.conftest import file_mode, strict_loads, umask_set

DATA = "synthetic-120x80x2400"


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A BPR run whose tail-slice metrics are NaN (an empty tail: tail_share=0), trained
    under umask 0o022; its folder and what ``recsys train`` printed."""
    root = tmp_path_factory.mktemp("strict")
    args = ["train", "--dataset", DATA, "--model", "bpr", "-o", str(root / "runs")]
    args += ["--no-tracking", "--quiet", "--set", "train.epochs=2"]
    args += ["--set", "eval.item_slices=true", "--set", "eval.tail_share=0"]
    with umask_set(0o022):
        output = invoke(*args)
    (config,) = (root / "runs").glob("*/config.yaml")
    return config.parent, output


def test_metrics_json_is_strict_json_with_null_for_a_nan_metric(trained: tuple[Path, str]) -> None:
    run, output = trained
    text = (run / "metrics.json").read_text()
    metrics = strict_loads(text)
    assert isinstance(metrics, dict)
    for part in ("valid", "test"):
        assert metrics[part]["recall_at_10_tail"] is None  # no user has tail items
        assert metrics[part]["n_users_tail"] == 0
        assert isinstance(metrics[part]["recall_at_10"], float)
    assert text.startswith('{\n  "model": "bpr",\n  "dataset"')  # order and indent kept
    history = strict_loads((run / "history.json").read_text())
    assert isinstance(history, list) and history[0]["valid_recall_at_10_tail"] is None
    assert strict_loads((run / "run.json").read_text())["status"] == "finished"
    # the table `recsys train` printed from metrics.json
    header = output.splitlines()[0].split()
    assert header[:4] == ["model", "epoch", "time_s", "recall@10"]
    assert output.splitlines()[2].startswith("bpr")


def test_evaluate_prints_a_run_with_a_nan_metric(trained: tuple[Path, str]) -> None:
    run, _ = trained
    table = invoke("evaluate", str(run)).splitlines()
    assert table[0].split()[:2] == ["part", "recall@10"]  # no empty epoch or time columns
    assert [line.split()[0] for line in table[2:]] == ["valid", "test"]
    printed = strict_loads(invoke("evaluate", str(run), "--json"))
    saved = strict_loads((run / "metrics.json").read_text())
    assert printed["test"]["recall_at_10_tail"] is None
    assert printed["test"]["recall_at_10"] == pytest.approx(saved["test"]["recall_at_10"])


def test_run_files_are_readable_as_the_umask_allows(trained: tuple[Path, str]) -> None:
    run, _ = trained
    for name in (
        "config.yaml",
        "metrics.json",
        "history.json",
        "run.json",
        "recommendations.csv",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
    ):
        assert file_mode(run / name) == 0o644, name


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=lambda m: f"umask{m:03o}")
def test_export_files_are_strict_and_readable_as_the_umask_allows(
    trained: tuple[Path, str], tmp_path: Path, mask: int
) -> None:
    run, _ = trained
    out = tmp_path / "export"
    with umask_set(mask):
        invoke("export", str(run), "-o", str(out))
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["item_embeddings.npy", "user_embeddings.npy", "items.csv", "users.csv", "export.json"]
    )
    for name in names:
        assert file_mode(out / name) == 0o666 & ~mask, name
    summary = strict_loads((out / "export.json").read_text())
    assert isinstance(summary, dict) and summary["model"] == "bpr"
    assert summary["item_embeddings"][0] == 80 and summary["user_embeddings"][0] == 120


def test_the_printed_table_shows_every_metric_the_run_asked_for(tmp_path: Path) -> None:
    out = invoke(
        "train", "-m", "pop", "--dataset", DATA, "-o", str(tmp_path), "--no-tracking",
        "--quiet", "--set", "eval.metrics=[recall,recall_min,ndcg,item_coverage]",
        "--set", "eval.item_slices=true",
    )  # fmt: skip
    header = out.splitlines()[0].split()
    for name in ("recall@10", "recall_min@10", "ndcg@10", "item_coverage@10", "recall_min@20"):
        assert name in header, header
    assert not [column for column in header if "tail" in column or "head" in column]
