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
import numpy as np
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
    # sae.pt too, as --help and the README say (it was left out)
    assert artifacts == {"probe/report.html", "probe/report.json", "probe/sae.pt"}


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
    # the terminal summary shows RecSAE's coherence of each method and its chance level
    for key, name in (("coherence", "sae"), ("coherence (untrained)", "untrained")):
        assert summary[key] == pytest.approx(report["summary"][name]["coherence"], abs=1e-4)
    assert summary["coherence (chance)"] == pytest.approx(
        report["quality"]["coherence_chance"], abs=1e-4
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


QUICK = ["--no-tracking", "--no-itda", "--no-baselines", *FAST_PROBE]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # each of these gave a traceback (exit 3) or trained nothing without a word
        (["--lr", "inf"], "probe.train.learning_rate: Input should be a finite number"),
        (["--lr", "1e30"], "lower train.learning_rate (now 1e+30)"),
        (["--set", "sae.aux_coef=inf"], "probe.sae.aux_coef: Input should be a finite number"),
        (["--set", "ablation.steer_scale=inf"], "probe.ablation.steer_scale"),
        (["--set", "train.batch_size=1"], "probe.train.batch_size"),
        (["--set", "train.seed=-1"], "probe.train.seed"),
        (["--set", "itda.seed=99999999999999999999"], "probe.itda.seed"),
        (["--compare", "RUN"], "--compare measures ITDA similarity"),
        (["--labeller", "tests.probe.fake_labeller:NeedsKey"], "cannot create NeedsKey()"),
        # every user held out: no concept could be found, and the report said so only as zero
        (["--set", "concepts.heldout_fraction=0.9999"], "concepts.heldout_fraction=0.9999"),
    ],
)
def test_bad_values_are_one_line_errors(ml100k_runs, tmp_path, capsys, args, message):
    args = [str(ml100k_runs["lightgcn"]) if a == "RUN" else a for a in args]
    out = tmp_path / "report"
    code = main(["probe", str(ml100k_runs["bpr"]), *QUICK, "-o", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "error:" in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize(("option", "value"), [("--seed", "-1"), ("--batch-size", "1")])
def test_out_of_range_flags_are_usage_errors(ml100k_runs, capsys, option, value):
    assert main(["probe", str(ml100k_runs["bpr"]), *QUICK, option, value]) == 2
    err = capsys.readouterr().err
    assert f"Invalid value for '{option}'" in err and "Traceback" not in err


def test_an_existing_report_folder_is_never_overwritten(ml100k_runs, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["probe", str(ml100k_runs["bpr"]), *QUICK, "-o", str(out)]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"report.html", "report.json", "sae.pt"}
    capsys.readouterr()
    assert main([*args, "--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert f"output folder {out} already exists and is not empty" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # an empty folder (made beforehand) is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["probe", str(ml100k_runs["bpr"]), *QUICK, "-o", str(empty)]) == 0
    assert (empty / "report.json").is_file()


def test_a_failed_report_leaves_no_half_written_folder(ml100k_runs, tmp_path, monkeypatch, capsys):
    import recsys.probe.report

    def broken(result):
        raise RuntimeError("the page cannot be drawn")

    monkeypatch.setattr(recsys.probe.report, "render_html", broken)
    out = tmp_path / "report"
    assert main(["probe", str(ml100k_runs["bpr"]), *QUICK, "-o", str(out)]) == 3
    assert "the page cannot be drawn" in capsys.readouterr().err
    # before: report.json of the failed probe was left behind (and blocked -o next time)
    assert list(tmp_path.iterdir()) == []


def test_probes_in_the_same_second_get_their_own_folders(ml100k_runs, tmp_path, monkeypatch):
    import datetime as dt

    import recsys.probe.runs

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(recsys.probe.runs, "datetime", Frozen)
    run = tmp_path / "bpr"
    shutil.copytree(ml100k_runs["bpr"], run)
    assert main(["probe", str(run), *QUICK]) == 0
    first = (run / "probes" / "user-20260102-030405" / "report.json").read_bytes()
    assert main(["probe", str(run), *QUICK, "--seed", "3"]) == 0
    names = sorted(p.name for p in (run / "probes").iterdir())
    assert names == ["user-20260102-030405", "user-20260102-030405-2"]
    assert (run / "probes" / names[0] / "report.json").read_bytes() == first


def test_a_labeller_that_returns_no_text_does_not_sink_the_report(ml100k_runs, tmp_path, caplog):
    out = tmp_path / "report"
    labeller = ["--labeller", "tests.probe.fake_labeller:returns_dict"]
    assert main(["probe", str(ml100k_runs["bpr"]), *QUICK, "-o", str(out), *labeller]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["cards"] and all(c["description"] is None for c in report["cards"])
    assert any("returned a dict" in r.getMessage() for r in caplog.records)


def test_a_bare_checkpoint_name_inside_its_folder(ml100k_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(ml100k_runs["bpr"] / "checkpoints")
    out = tmp_path / "report"
    assert main(["probe", "best.pt", *QUICK, "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert Path(report["setup"]["run_dir"]).resolve() == ml100k_runs["bpr"].resolve()


def test_compare_on_an_item_site_needs_the_same_items(tmp_path, capsys):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), 12)
    picks = np.concatenate([rng.choice(30, 12, replace=False) for _ in range(40)])
    runs = {}
    for name, offset in (("a", 100), ("b", 200)):  # same users, other item ids
        path = tmp_path / f"{name}.csv"
        rows = [f"{u},{offset + i}\n" for u, i in zip(users, picks, strict=True)]
        path.write_text("user,item\n" + "".join(rows))
        args = ["--data-path", str(path), "--set", "data.format=csv"]
        args += ["--set", "data.columns={user: user, item: item}", "--set", f"run_name={name}"]
        train = ["train", "--model", "bpr", "-o", str(tmp_path / "runs"), *args, *FAST_TRAIN]
        assert main([*train, "--no-tracking"]) == 0
        runs[name] = tmp_path / "runs" / name
    capsys.readouterr()
    out = tmp_path / "report"
    args = ["probe", str(runs["a"]), "--site", "item", "--compare", str(runs["b"]), "-k", "4"]
    assert main([*args, "--no-tracking", "--no-baselines", "-o", str(out), *FAST_PROBE]) == 2
    # before: ITDA atom ids (row indices) of two different catalogues were compared
    err = capsys.readouterr().err
    assert f"{runs['b']} was trained on other items than {runs['a']}" in err
    assert "ITDA similarity of an item site" in err  # it said "a item site"
    assert not out.exists()


def test_the_probe_goes_to_the_store_the_training_run_went_to(tmp_path, capsys, monkeypatch):
    # trained with $RECSYS_TRACKING_URI; probed later without it: the probe finds the store
    # in run.json and becomes a child of the training run
    store = f"sqlite:///{(tmp_path / 'elsewhere' / 'mlflow.db').as_posix()}"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("RECSYS_TRACKING_URI", store)
    out = tmp_path / "runs"
    args = ["--dataset", "synthetic-60x40x600", "-o", str(out), "--quiet", "--set", "run_name=pop"]
    assert main(["train", "--model", "pop", *args]) == 0
    training_id = json.loads((out / "pop" / "run.json").read_text())["tracking_run_id"]
    monkeypatch.delenv("RECSYS_TRACKING_URI")
    capsys.readouterr()
    probe = ["probe", str(out / "pop"), "--site", "item_popularity", "-o", str(tmp_path / "r")]
    assert main([*probe, "-k", "2", "--no-itda", "--epochs", "2", "--quiet"]) == 0
    client = mlflow.MlflowClient(tracking_uri=store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "recsys"]
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{training_id}'"
    )
    assert len(children) == 1
    assert not (out / "mlflow.db").exists()
