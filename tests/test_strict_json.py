"""Every JSON file the package writes besides a run folder's (tested in tests/cli) is strict
JSON: a NaN or infinite value is ``null``, never Python's ``NaN``/``Infinity``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.conftest import strict_loads

NAN = float("nan")


def test_tracked_json_artifact_is_strict(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from recsys.tracking import MlflowTracker, default_tracking_uri

    uri = default_tracking_uri(tmp_path / "store")
    obj = {"valid": {"recall_at_10": 0.5, "recall_at_10_tail": NAN}, "best": math.inf}
    with MlflowTracker(uri, experiment="strict") as tracker:
        tracker.start("strict", {})
        tracker.log_dict(obj, "metrics.json")
    local = MlflowClient(tracking_uri=uri).download_artifacts(
        tracker.run_id, "metrics.json", str(tmp_path / "down")
    )
    assert strict_loads(Path(local).read_text()) == {
        "valid": {"recall_at_10": 0.5, "recall_at_10_tail": None},
        "best": None,
    }


def test_dnis_report_json_is_strict(tmp_path: Path) -> None:
    from recsys.dnis.report import FrontierPoint, write_report

    point = FrontierPoint(
        label="dnis-0.5",
        kind="dnis",
        setting=0.5,
        parameters=1000,
        valid={"recall_at_20": 0.25, "recall_at_20_tail": NAN},
        test={"recall_at_20": NAN},
        run_dir=str(tmp_path / "run"),
        seconds=1.5,
        epochs_run=2,
        dims={"user": [4, 2]},
    )
    paths = write_report([point], tmp_path / "report")
    report = strict_loads(paths["json"].read_text())
    assert isinstance(report, dict)
    assert report["points"][0]["test"] == {"recall_at_20": None}
    assert report["points"][0]["valid"]["recall_at_20_tail"] is None


@pytest.mark.parametrize("module", ["recsys.tuning.driver", "recsys.tuning.callbacks"])
def test_tuning_json_files_are_strict(module: str, tmp_path: Path) -> None:
    import importlib

    write_json = importlib.import_module(module)._write_json
    path = tmp_path / "summary.json"
    write_json(path, {"best": {"valid": {"ndcg_at_10": NAN, "recall_at_10": 0.5}}, "n": 3})
    assert strict_loads(path.read_text()) == {
        "best": {"valid": {"ndcg_at_10": None, "recall_at_10": 0.5}},
        "n": 3,
    }
    assert path.read_text().startswith('{\n  "best": {\n    "valid"')  # indent kept
