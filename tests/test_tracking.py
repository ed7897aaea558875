"""Tests of recsys.tracking against real MLflow stores: sqlite files and a live server."""

from __future__ import annotations

import json
import logging
import math
import shlex
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.utils.validation import _validate_metric_name, _validate_param_name

from recsys.cli import main
from recsys.errors import TrackingError
from recsys.tracking import (
    ENV_TRACKING_URI,
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MlflowTracker,
    NullTracker,
    Tracker,
    check_tracking_uri,
    default_tracking_uri,
    flatten_params,
    make_tracker,
    redact_uri,
    resolve_tracking_uri,
    sanitize_key,
)
from tests.mlflow_server import free_loopback_port

# the `mlflow_server` fixture comes from tests/mlflow_server.py through conftest.py

CONFIG = {
    "model": {"name": "bpr", "embedding_size": 64, "layers": [64, 32]},
    "train": {"lr": 0.01, "epochs": 3, "early_stop": True, "device": None},
    "data": {"dataset": "ml-100k", "path": "/data/ml-100k"},
}
FLAT_CONFIG = {
    "model.name": "bpr",
    "model.embedding_size": "64",
    "model.layers": "[64, 32]",
    "train.lr": "0.01",
    "train.epochs": "3",
    "train.early_stop": "True",
    "train.device": "None",
    "data.dataset": "ml-100k",
    "data.path": "/data/ml-100k",
}
NDCG = [0.11, 0.23, 0.31]
LOSS = [0.9, 0.5, 0.4]


@pytest.fixture(scope="module")
def shared_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the tests that do not check store creation (each costs ~1.5 s)."""
    return default_tracking_uri(tmp_path_factory.mktemp("shared-store"))


def _log_example_run(tracker: Tracker, files: Path) -> None:
    """Log the run every round-trip test reads back: params, 3 steps, a dict, a file, a folder."""
    files.mkdir(parents=True, exist_ok=True)
    (files / "metrics.json").write_text('{"ndcg": 0.31}\n')
    report = files / "report"
    report.mkdir(exist_ok=True)
    (report / "index.html").write_text("<html></html>\n")
    tracker.start("run-a", CONFIG, tags={"dataset": "ml-100k"})
    for step in range(3):
        tracker.log_metrics({"valid/ndcg@10": NDCG[step], "train/loss": LOSS[step]}, step=step)
    tracker.log_dict(CONFIG, "config.yaml")
    tracker.log_artifact(files / "metrics.json")
    tracker.log_artifact(report)


def _assert_example_run(client: MlflowClient, run_id: str, tmp_path: Path) -> None:
    """Read the example run back through ``client`` and check every part of it."""
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "run-a"
    assert run.data.params == FLAT_CONFIG
    assert run.data.tags["dataset"] == "ml-100k"
    history = sorted(client.get_metric_history(run_id, "valid/ndcg_at_10"), key=lambda m: m.step)
    assert [m.step for m in history] == [0, 1, 2]
    assert [m.value for m in history] == pytest.approx(NDCG)
    loss = sorted(client.get_metric_history(run_id, "train/loss"), key=lambda m: m.step)
    assert [m.value for m in loss] == pytest.approx(LOSS)
    assert run.data.metrics["valid/ndcg_at_10"] == pytest.approx(NDCG[-1])
    top = {f.path for f in client.list_artifacts(run_id)}
    assert top == {"config.yaml", "metrics.json", "report"}
    assert [f.path for f in client.list_artifacts(run_id, "report")] == ["report/index.html"]
    local = client.download_artifacts(run_id, "config.yaml", str(tmp_path))
    text = Path(local).read_text()
    assert yaml.safe_load(text) == CONFIG
    # key order of the config is kept (MLflow's own log_dict would sort it)
    assert text.index("model:") < text.index("train:") < text.index("data:")


# --------------------------------------------------------------------------- sqlite stores


def test_sqlite_default_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv(ENV_TRACKING_URI, raising=False)
    output_dir = tmp_path / "out"

    tracker = make_tracker(True, None, output_dir, "recsys-test")
    assert isinstance(tracker, MlflowTracker)
    assert tracker.tracking_uri == f"sqlite:///{(output_dir / 'mlflow.db').resolve().as_posix()}"
    with tracker:
        _log_example_run(tracker, tmp_path / "files")
        assert tracker.active
    assert not tracker.active
    assert tracker.run_id is not None

    client = MlflowClient(tracking_uri=default_tracking_uri(output_dir))
    _assert_example_run(client, tracker.run_id, tmp_path / "download")
    # the store and its artifacts live in output_dir, nothing in the working directory
    assert (output_dir / "mlflow.db").is_file()
    assert any((output_dir / "mlartifacts").rglob("config.yaml"))
    assert list(elsewhere.iterdir()) == []


def test_new_sqlite_store_is_quiet(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)  # which would keep the chatter
    tracker = MlflowTracker(default_tracking_uri(tmp_path / "quiet"), experiment="quiet")
    assert tracker.experiment_id
    captured = capfd.readouterr()
    assert "Creating initial MLflow database tables" not in captured.err + captured.out
    assert "Updating database tables" not in captured.err + captured.out


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")]
)
def test_exception_in_context_ends_run(
    shared_uri: str, error: type[BaseException], status: str
) -> None:
    with pytest.raises(error), MlflowTracker(shared_uri, experiment="failures") as tracker:
        tracker.start("doomed", {"lr": 0.1})
        tracker.log_metrics({"loss": 1.0}, step=0)
        raise error("boom")
    assert tracker.run_id is not None
    assert not tracker.active
    run = MlflowClient(tracking_uri=shared_uri).get_run(tracker.run_id)
    assert run.info.status == status
    assert run.data.metrics == {"loss": 1.0}


def test_child_run_carries_parent_tag(shared_uri: str) -> None:
    parent = MlflowTracker(shared_uri, experiment="tune")
    parent.start("search", {"space": {"lr": [0.1, 0.01]}})
    assert parent.run_id is not None
    children = []
    for lr in (0.1, 0.01):
        with MlflowTracker(shared_uri, experiment="tune", parent_run_id=parent.run_id) as child:
            child.start(f"trial-lr{lr}", {"lr": lr})
            child.log_metrics({"valid/ndcg@10": lr * 2}, step=0)
        children.append(child.run_id)
    parent.end()

    client = MlflowClient(tracking_uri=shared_uri)
    for run_id in children:
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent.run_id
        assert run.info.experiment_id == parent.experiment_id
    assert "mlflow.parentRunId" not in client.get_run(parent.run_id).data.tags
    found = client.search_runs(
        [parent.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'"
    )
    assert sorted(r.info.run_id for r in found) == sorted(children)


def test_unknown_parent_run_is_a_tracking_error(shared_uri: str) -> None:
    with pytest.raises(TrackingError, match="parent run 0123456789abcdef"):
        MlflowTracker(shared_uri, parent_run_id="0123456789abcdef")


def test_many_params_and_odd_metric_names(shared_uri: str) -> None:
    params = {f"group{g}": {f"p{i}": i for i in range(50)} for g in range(5)}  # 250 params
    with MlflowTracker(shared_uri, experiment="odd names") as tracker:
        tracker.start("wide", params, tags={"note@v1": "x"})
        tracker.log_metrics({"test/ndcg@20": 0.5, "hit:10": 1, "coverage (items)": 0.25})
    run = MlflowClient(tracking_uri=shared_uri).get_run(tracker.run_id)
    assert len(run.data.params) == 250
    assert run.data.params["group4.p49"] == "49"
    assert run.data.metrics == {"test/ndcg_at_20": 0.5, "hit_10": 1.0, "coverage _items_": 0.25}
    assert run.data.tags["note_at_v1"] == "x"


def test_log_dict_json_with_non_plain_values(shared_uri: str, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    obj = {"path": Path("/data/x"), "k": np.int64(10), "vec": np.arange(3), "ks": (5, 10)}
    with MlflowTracker(shared_uri, experiment="dicts") as tracker:
        tracker.start("dicts", {})
        tracker.log_dict(obj, "reports/summary.json")
    client = MlflowClient(tracking_uri=shared_uri)
    assert [f.path for f in client.list_artifacts(tracker.run_id, "reports")] == [
        "reports/summary.json"
    ]
    local = client.download_artifacts(tracker.run_id, "reports/summary.json", str(tmp_path))
    assert yaml.safe_load(Path(local).read_text()) == {
        "path": "/data/x",
        "k": 10,
        "vec": [0, 1, 2],
        "ks": [5, 10],
    }


def test_misuse_is_reported(shared_uri: str, tmp_path: Path) -> None:
    tracker = MlflowTracker(shared_uri, experiment="misuse")
    tracker.end()  # no run yet: a no-op
    tracker.end("FAILED")
    with pytest.raises(RuntimeError, match="start"):
        tracker.log_metrics({"loss": 1.0})
    tracker.start("misuse", {})
    with pytest.raises(RuntimeError, match="still open"):
        tracker.start("again", {})
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        tracker.log_artifact(tmp_path / "missing.txt")
    with pytest.raises(TypeError, match="'loss'"):
        tracker.log_metrics({"loss": "high"})
    with pytest.raises(ValueError, match="status"):
        tracker.end("DONE")
    tracker.end("finished")
    tracker.end()  # already ended: a no-op
    assert MlflowClient(tracking_uri=shared_uri).get_run(tracker.run_id).info.status == "FINISHED"


def test_deleted_experiment_is_a_tracking_error(shared_uri: str) -> None:
    client = MlflowClient(tracking_uri=shared_uri)
    client.delete_experiment(MlflowTracker(shared_uri, experiment="gone").experiment_id)
    with pytest.raises(TrackingError, match=r"'gone'.*deleted") as info:
        MlflowTracker(shared_uri, experiment="gone")
    # the restore command the message suggests works as given: `mlflow experiments` takes the
    # store from MLFLOW_TRACKING_URI only
    from click.testing import CliRunner
    from mlflow.experiments import commands

    command = shlex.split(str(info.value).split("restore it (", 1)[1].split(")", 1)[0])
    env = dict(item.split("=", 1) for item in command if "=" in item and "--" not in item)
    args = command[command.index("restore") :]
    result = CliRunner().invoke(commands, args, env=env)
    assert result.exit_code == 0, result.output
    assert MlflowTracker(shared_uri, experiment="gone").experiment_id


# --------------------------------------------------------------------------- no tracking


def test_disabled_tracking_is_a_null_tracker(tmp_path: Path) -> None:
    tracker = make_tracker(False, "http://127.0.0.1:1", tmp_path / "out", "recsys")
    assert isinstance(tracker, NullTracker)
    assert isinstance(tracker, Tracker)
    with tracker:
        tracker.start("run", CONFIG)
        tracker.log_metrics({"loss": 1.0}, step=0)
        tracker.log_dict(CONFIG, "config.yaml")
        tracker.log_artifact(tmp_path / "missing")
        assert tracker.run_id is None
    tracker.end("FAILED")
    with pytest.raises(ValueError, match="status"):
        tracker.end("OOPS")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- names and params


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ndcg@10", "ndcg_at_10"),
        ("valid/ndcg@20", "valid/ndcg_at_20"),
        ("model.embedding_size", "model.embedding_size"),
        ("train/loss-bpr x", "train/loss-bpr x"),
        ("hit:10", "hit_10"),
        ("coverage(items)%", "coverage_items__"),
        ("/valid//recall/", "valid/recall"),
        ("./a/../b", "a/__/b"),
        ("..", "__"),
        ("", "_"),
        ("@", "_at_"),
    ],
)
def test_sanitize_key(name: str, expected: str) -> None:
    assert sanitize_key(name) == expected


@pytest.mark.parametrize(
    "name",
    ["ndcg@10", "a//b", "/abs", "trail/", "../up", "x" * 400, "a/" * 200, "tab\there", "é+ü", ""],
)
def test_sanitized_keys_pass_mlflow_validation(name: str) -> None:
    key = sanitize_key(name)
    assert len(key) <= MAX_KEY_LENGTH
    _validate_metric_name(key)
    _validate_param_name(key)
    assert sanitize_key(key) == key


def test_flatten_params() -> None:
    assert flatten_params(CONFIG) == FLAT_CONFIG
    assert flatten_params(FLAT_CONFIG) == FLAT_CONFIG
    assert flatten_params({"a": {"b": {"c": 1}}, "empty": {}}, prefix="cfg.") == {
        "cfg.a.b.c": "1",
        "cfg.empty": "{}",
    }
    assert flatten_params({"ks": (5, 10), "names": ["a", "b"]}) == {
        "ks": "(5, 10)",
        "names": "['a', 'b']",
    }
    long = flatten_params({"items": list(range(5000))})["items"]
    assert len(long) == MAX_PARAM_VALUE_LENGTH
    assert long.startswith("[0, 1, 2") and long.endswith("...")


def test_flatten_params_names_a_cut_value(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="recsys.tracking"):
        flat = flatten_params({"model": {"base_params": {"items": "x" * 7000}, "k": 1}})
    assert len(flat["model.base_params.items"]) == MAX_PARAM_VALUE_LENGTH
    cut = [r.getMessage() for r in caplog.records if "model.base_params.items" in r.getMessage()]
    assert len(cut) == 1 and "7000" in cut[0] and "cut" in cut[0]


# --------------------------------------------------------------------------- URIs


def test_default_tracking_uri_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri(Path("runs"))
    assert uri == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve().as_posix()}"
    assert uri.startswith("sqlite:////")


def test_resolve_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TRACKING_URI, raising=False)
    assert resolve_tracking_uri(None, tmp_path) == default_tracking_uri(tmp_path)
    monkeypatch.setenv(ENV_TRACKING_URI, "http://127.0.0.1:5000")
    assert resolve_tracking_uri(None, tmp_path) == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("", tmp_path) == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:///x.db", tmp_path) == "sqlite:///x.db"
    monkeypatch.setenv(ENV_TRACKING_URI, " ")
    assert resolve_tracking_uri(None, tmp_path) == default_tracking_uri(tmp_path)


def test_redact_uri() -> None:
    assert redact_uri("https://me:secret@host:8443/x") == "https://me:***@host:8443/x"
    assert redact_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_unreachable_server_fails_fast() -> None:
    uri = f"http://127.0.0.1:{free_loopback_port()}"
    tic = time.monotonic()
    with pytest.raises(TrackingError) as info:
        check_tracking_uri(uri, timeout=5.0)
    assert time.monotonic() - tic < 10.0
    message = str(info.value)
    assert uri in message
    assert "connection refused" in message
    assert "--no-tracking" in message


def test_make_tracker_checks_before_connecting(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_loopback_port()}"
    tic = time.monotonic()
    with pytest.raises(TrackingError, match="cannot reach MLflow tracking server"):
        make_tracker(True, uri, tmp_path, "recsys")
    assert time.monotonic() - tic < 10.0


def test_check_sqlite_creates_folder(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    check_tracking_uri(f"sqlite:///{(folder / 'mlflow.db').as_posix()}")
    assert folder.is_dir()
    assert list(folder.iterdir()) == []  # the write probe leaves nothing behind
    check_tracking_uri("sqlite:///:memory:")


def test_check_sqlite_unusable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    uri = f"sqlite:///{(blocker / 'mlflow.db').as_posix()}"
    with pytest.raises(TrackingError, match="cannot create folder") as info:
        check_tracking_uri(uri)
    assert uri in str(info.value)
    (tmp_path / "db-is-dir.db").mkdir()
    with pytest.raises(TrackingError, match="is a folder"):
        check_tracking_uri(f"sqlite:///{(tmp_path / 'db-is-dir.db').as_posix()}")


def test_check_file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "mlruns"
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(TrackingError, match="MLFLOW_ALLOW_FILE_STORE"):
        check_tracking_uri(store.as_uri())
    assert store.is_dir()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_tracking_uri(store.as_uri())
    check_tracking_uri(str(tmp_path / "plain-path"))
    assert (tmp_path / "plain-path").is_dir()


def test_check_unknown_scheme_wraps_mlflow_error() -> None:
    with pytest.raises(TrackingError, match="bogus://nowhere"):
        check_tracking_uri("bogus://nowhere")


# --------------------------------------------------------------------------- HTTP servers


class _StubHandler(BaseHTTPRequestHandler):
    """Answers GETs with the status its server maps the path to (404 if unmapped)."""

    def do_GET(self) -> None:
        status = self.server.statuses.get(self.path.split("?")[0], 404)  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@pytest.fixture
def stub_server() -> Iterator[tuple[str, dict[str, int]]]:
    """A loopback HTTP server whose status per path the test sets."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
    server.statuses = {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.statuses  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.network
def test_check_falls_back_to_search_endpoint(stub_server: tuple[str, dict[str, int]]) -> None:
    uri, statuses = stub_server
    statuses["/api/2.0/mlflow/experiments/search"] = 200
    check_tracking_uri(uri)  # /health is 404 (a proxy, a path prefix), the REST API answers
    statuses["/api/2.0/mlflow/experiments/search"] = 401
    with pytest.raises(TrackingError, match=r"HTTP 404 .* HTTP 401") as info:
        check_tracking_uri(uri + "/")
    assert uri in str(info.value)
    statuses["/health"] = 200
    check_tracking_uri(uri)


@pytest.mark.network
def test_live_server_round_trip(mlflow_server: str, tmp_path: Path) -> None:
    check_tracking_uri(mlflow_server)
    tracker = make_tracker(True, mlflow_server, tmp_path / "out", "live")
    assert isinstance(tracker, MlflowTracker)
    with tracker:
        _log_example_run(tracker, tmp_path / "files")
    assert tracker.run_id is not None
    _assert_example_run(MlflowClient(tracking_uri=mlflow_server), tracker.run_id, tmp_path / "dl")
    assert not (tmp_path / "out").exists()  # a server store writes nothing locally

    with MlflowTracker(mlflow_server, "live", parent_run_id=tracker.run_id) as child:
        child.start("child", {"lr": 0.1})
        child.log_metrics({"train/loss": float("nan")}, step=0)  # a diverged run still logs
    run = MlflowClient(tracking_uri=mlflow_server).get_run(child.run_id)
    assert run.data.tags["mlflow.parentRunId"] == tracker.run_id
    assert math.isnan(run.data.metrics["train/loss"])


# --------------------------------------------------------------------------- `recsys train`

TRAIN = ["train", "--dataset", "synthetic-200x100x3000", "--set", "train.epochs=2"]
RUN_FILES = ("config.yaml", "split.npz", "metrics.json", "history.json", "recommendations.csv")


def _runs(uri: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def test_train_records_one_run_per_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [*TRAIN, "--model", "pop", "--model", "bpr", "-o", str(out)]
    assert main([*argv, "--set", "tracking.experiment=brand new"]) == 0
    runs = _runs(default_tracking_uri(out), "brand new")
    assert [r.data.tags["model"] for r in runs] == ["pop", "bpr"]
    client = MlflowClient(tracking_uri=default_tracking_uri(out))
    for run in runs:
        assert run.info.status == "FINISHED"
        run_dir = Path(run.data.tags["run_dir"])
        flat = flatten_params(yaml.safe_load((run_dir / "config.yaml").read_text()))
        assert run.data.params == {sanitize_key(k): v for k, v in flat.items()}
        test = json.loads((run_dir / "metrics.json").read_text())["test"]
        assert run.data.metrics["test/recall_at_20"] == pytest.approx(test["recall_at_20"])
        artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "metrics.json", "recommendations.csv", "train.log"} <= artifacts
        assert "checkpoints/best.pt" in {
            f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")
        }
    history = client.get_metric_history(runs[1].info.run_id, "valid/ndcg_at_10")
    assert sorted(m.step for m in history) == [0, 1]


class _ServerGone:
    """Makes every MLflow client write fail from the ``after``-th metrics batch on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, after: int | None) -> None:
        from mlflow.exceptions import MlflowException

        self.gone = False
        self.calls = 0
        log_batch = MlflowClient.log_batch

        def fail(*args: object, **kwargs: object) -> None:
            self.calls += 1
            raise MlflowException("API request failed: Max retries exceeded (connection refused)")

        def batch(client: MlflowClient, run_id: str, metrics=(), **kwargs: object) -> None:
            if metrics and after is not None:
                self.gone = self.gone or self.batches >= after
                self.batches += 1
            if self.gone:
                return fail()
            return log_batch(client, run_id, metrics=metrics, **kwargs)

        def terminated(client: MlflowClient, *args: object, **kwargs: object) -> None:
            self.gone = True
            return fail()

        self.batches = 0
        monkeypatch.setattr(MlflowClient, "log_batch", batch)
        for name in ("log_artifact", "log_artifacts"):
            real = getattr(MlflowClient, name)
            monkeypatch.setattr(
                MlflowClient,
                name,
                lambda *a, _real=real, **k: fail() if self.gone else _real(*a, **k),
            )
        monkeypatch.setattr(MlflowClient, "set_terminated", terminated)


@pytest.mark.parametrize("after", [1, None], ids=["after-first-epoch", "at-the-end"])
def test_tracking_failure_mid_run_keeps_the_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    after: int | None,
) -> None:
    server = _ServerGone(monkeypatch, after)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="recsys.tracking"):
        status = main([*TRAIN, "--model", "bpr", "--model", "pop", "-o", str(out)])
    assert status == 0
    for run_dir in (p for p in out.iterdir() if p.is_dir() and p.name != "mlartifacts"):
        for name in (*RUN_FILES, "checkpoints/best.pt"):
            assert (run_dir / name).is_file(), f"{run_dir.name}/{name} missing"
    told = [r.getMessage() for r in caplog.records if "tracking is off" in r.getMessage()]
    # once per run (two models), naming the cause; no write is retried after the first failure
    assert len(told) == 2 and server.calls == 2
    assert all("connection refused" in message for message in told)
    runs = _runs(default_tracking_uri(out), "recsys")
    assert [r.info.status for r in runs] == ["RUNNING", "RUNNING"]
    if after == 1:  # the first epoch got through before the server went away
        steps = MlflowClient(tracking_uri=default_tracking_uri(out)).get_metric_history(
            runs[0].info.run_id, "train/loss"
        )
        assert [m.step for m in steps] == [0]


@pytest.mark.parametrize(
    ("error", "status", "exit_code"),
    [(KeyboardInterrupt, "KILLED", 130), (RuntimeError, "FAILED", 3)],
)
def test_interrupted_or_failed_train_ends_the_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: type[BaseException],
    status: str,
    exit_code: int,
) -> None:
    """The MLflow run ends KILLED or FAILED, and the run folder says how it ended."""
    import recsys.experiment

    def broken(*args: object, **kwargs: object) -> None:
        raise error("stop")

    monkeypatch.setattr(recsys.experiment, "recommend", broken)
    out = tmp_path / "out"
    assert main([*TRAIN, "--model", "pop", "-o", str(out)]) == exit_code
    [run] = _runs(default_tracking_uri(out), "recsys")
    assert run.info.status == status
    [folder] = [p for p in out.iterdir() if (p / "config.yaml").is_file()]
    record = json.loads((folder / "run.json").read_text())
    assert record["tracking_run_id"] == run.info.run_id
    log = (folder / "train.log").read_text()
    if error is KeyboardInterrupt:
        assert record["status"] == "interrupted" and "error" not in record
        assert f"recsys train --resume {folder}" in log
    else:
        assert record["status"] == "failed" and record["error"] == "RuntimeError: stop"
        assert "ERROR recsys: run failed: RuntimeError: stop" in log
