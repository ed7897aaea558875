"""`recsys probe` end to end on MovieLens-100k (LightGCN and BPR-MF), and its errors."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import mlflow
import pytest

from recsys.cli import main
from recsys.probe.report import SECTIONS

FAST_TRAIN = ["--set", "train.epochs=3", "--set", "train.num_threads=1", "--quiet"]
FAST_PROBE = ["--epochs", "8", "--quiet"]


@pytest.fixture(scope="session")
def ml100k_runs(tmp_path_factory) -> dict[str, Path]:
    """LightGCN (tracked in MLflow) and BPR-MF (untracked) trained briefly on MovieLens-100k."""
    out = tmp_path_factory.mktemp("ml100k-runs")
    runs = {}
    for model, tracking in (("lightgcn", []), ("bpr", ["--no-tracking"])):
        code = main(
            [
                "train",
                "--model",
                model,
                "--dataset",
                "ml-100k",
                "-o",
                str(out),
                *FAST_TRAIN,
                *tracking,
                "--set",
                f"run_name={model}",
            ]
        )
        assert code == 0
        runs[model] = out / model
    return runs


class _Page(HTMLParser):
    """Collects section ids, image sources and the text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("link", "script") or (tag == "a" and not attrs.get("href", "#").startswith("#")):
            self.links.append(attrs.get("href") or attrs.get("src") or "")

    def handle_data(self, data):
        self.text.append(data)


def check_report(folder: Path) -> tuple[_Page, dict]:
    """Every section is there, the page is self-contained, every image decodes as a PNG."""
    page = _Page()
    page.feed((folder / "report.html").read_text())
    assert page.sections == [sid for sid, _ in SECTIONS]
    assert not page.links, page.links  # no external file, script or link
    report = json.loads((folder / "report.json").read_text())  # strict JSON: no NaN
    # training, frequency and confidence plots, and the ablation plot when latents were ablated
    assert len(page.images) == 3 + bool(report["ablation"]["latents"])
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        raw = base64.b64decode(src[len(prefix) :], validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = matplotlib.image.imread(io.BytesIO(raw), format="png")
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    return page, report


def _report_folder(out: str) -> Path:
    line = next(x for x in out.splitlines() if x.startswith("report"))
    return Path(line.split()[-1]).parent


def test_probe_lightgcn_writes_the_report_and_logs_a_child_mlflow_run(ml100k_runs, capsys):
    run = ml100k_runs["lightgcn"]
    assert main(["probe", str(run), *FAST_PROBE]) == 0
    out = capsys.readouterr().out
    folder = _report_folder(out)
    assert folder.parent == run / "probes" and folder.name.startswith("user-")
    page, report = check_report(folder)
    assert (folder / "sae.pt").is_file()
    text = " ".join(page.text)
    assert "Probe report: lightgcn on ml-100k, site user" in text
    # the same numbers in JSON and on the page
    q = report["quality"]
    assert q["valid_retention"] >= 0.95
    assert f"{100 * q['valid_retention']:.1f}%" in text
    assert report["setup"]["n_latents"] == 64 * 4 and report["setup"]["k"] == 16
    assert set(report["summary"]) == {"sae", "untrained", "neurons"}
    assert len(report["latents"]) == 256
    assert {"genre", "popularity", "release_year", "movie_title"} <= set(
        report["setup"]["attribute_families"]
    )
    assert report["itda"]["n_atoms"] > 0
    layer0 = next(s for s in report["itda"]["similarity"] if "user_layer0" in s["other"])
    assert 0 <= layer0["chance"] <= 1 and 0 <= layer0["jaccard"] <= 1
    # MLflow: a child of the training run, with the report as artifacts
    training_id = json.loads((run / "run.json").read_text())["tracking_run_id"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run.parent / 'mlflow.db'}")
    children = client.search_runs(
        [client.get_run(training_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{training_id}'",
    )
    assert len(children) == 1
    probe_run = children[0]
    assert probe_run.info.run_name == "probe-user" and probe_run.info.status == "FINISHED"
    assert probe_run.data.metrics["probe/valid_retention"] == pytest.approx(q["valid_retention"])
    assert probe_run.data.params["probe.sae.k"] == "16"
    artifacts = {a.path for a in client.list_artifacts(probe_run.info.run_id, "probe")}
    assert artifacts == {"probe/report.html", "probe/report.json"}


def test_probe_bpr_checkpoint_compares_models_and_uses_a_labeller(ml100k_runs, tmp_path, capsys):
    run = ml100k_runs["bpr"]
    args = [
        "probe",
        str(run / "checkpoints" / "best.pt"),
        "--compare",
        str(ml100k_runs["lightgcn"]),
        "--labeller",
        "tests.probe.fake_labeller:describe",
        "--no-tracking",
        "-o",
        str(tmp_path / "report"),
        "--json",
        *FAST_PROBE,
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["report"] == str(tmp_path / "report" / "report.html")
    page, report = check_report(tmp_path / "report")
    assert report["setup"]["model"] == "bpr"
    compared = [s for s in report["itda"]["similarity"] if s.get("compare")]
    assert len(compared) == 1 and 0.0 <= compared[0]["jaccard"] <= 1.0
    assert summary["itda jaccard (compared model)"] == pytest.approx(
        compared[0]["jaccard"], abs=1e-4
    )
    cards = report["cards"]
    assert cards and all(c["description"] == f"LABEL<{c['label'].upper()}>" for c in cards)
    assert cards[0]["description"] in " ".join(page.text)


def test_probe_item_site(ml100k_runs, tmp_path):
    out = tmp_path / "items"
    args = [
        "probe",
        str(ml100k_runs["bpr"]),
        "--site",
        "item",
        "--no-tracking",
        "-o",
        str(out),
        "--no-baselines",
        "--no-itda",
        *FAST_PROBE,
    ]
    assert main(args) == 0
    _, report = check_report(out)
    assert report["setup"]["kind"] == "item" and report["setup"]["n_instances"] == 1682
    assert "untrained" not in report["summary"] and report["itda"] == {"enabled": False}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "nope"], "unknown probe site 'nope'"),
        (["-k", "100000"], "sae.k=100000 exceeds the 256 latents"),
        (["--set", "sae.kk=3"], "unknown key 'probe.sae.kk'"),
        (["--labeller", "nomodule_xyz:f"], "cannot import 'nomodule_xyz'"),
        (["--labeller", "tests.probe.fake_labeller:not_callable"], "neither callable"),
    ],
)
def test_bad_options_are_one_line_errors(ml100k_runs, capsys, args, message):
    code = main(["probe", str(ml100k_runs["bpr"]), "--no-tracking", *FAST_PROBE, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.startswith("error:"), err
    assert "Traceback" not in err


def test_unknown_site_lists_the_model_sites(ml100k_runs, capsys):
    assert main(["probe", str(ml100k_runs["lightgcn"]), "--site", "tower", "--no-tracking"]) == 2
    assert "item, item_layer0, user, user_layer0" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["split.npz", "config.yaml", "checkpoints/best.pt"])
def test_incomplete_run_folder_names_the_missing_file(ml100k_runs, tmp_path, capsys, missing):
    broken = tmp_path / "broken"
    shutil.copytree(ml100k_runs["bpr"], broken)
    (broken / missing).unlink()
    assert main(["probe", str(broken), "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert missing.split("/")[-1] in err and str(broken) in err


def test_missing_path_and_non_checkpoint_file(tmp_path, capsys):
    assert main(["probe", str(tmp_path / "nowhere"), "--no-tracking"]) == 2
    assert "does not exist" in capsys.readouterr().err
    other = tmp_path / "notes.txt"
    other.write_text("x")
    assert main(["probe", str(other), "--no-tracking"]) == 2
    assert "neither a run folder nor a checkpoint" in capsys.readouterr().err


def test_a_site_the_scorer_does_not_read_is_probed_without_ablation(tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["--dataset", "synthetic-60x40x600", "-o", str(out), "--no-tracking", "--quiet"]
    assert main(["train", "--model", "pop", *args, "--set", "run_name=pop"]) == 0
    capsys.readouterr()
    assert main(["probe", str(out / "pop"), "--no-tracking"]) == 2
    assert "unknown probe site 'user' for Pop; its representations are: item_popularity" in (
        capsys.readouterr().err
    )
    report_dir = tmp_path / "report"
    args = ["probe", str(out / "pop"), "--site", "item_popularity", "-o", str(report_dir)]
    assert main([*args, "-k", "2", "--no-tracking", "--no-itda", "--epochs", "3", "--quiet"]) == 0
    _, report = check_report(report_dir)
    assert report["setup"]["scoring_site"] is False and report["setup"]["d_in"] == 1
    assert "valid_retention" not in report["quality"] and report["ablation"]["latents"] == []
    assert any("not read by the model's scorer" in note for note in report["notes"])
