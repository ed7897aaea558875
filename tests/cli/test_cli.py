"""The `recsys` command end to end, in-process through `main(argv)`."""

from __future__ import annotations

import io
import json
import textwrap

import mlflow
import pandas as pd
import pytest
import torch
import yaml

from recsys.cli import main

DATA = "synthetic-120x80x2400"
FAST = ["--set", "train.epochs=3", "--set", "train.batch_size=256", "--quiet"]


def _train(tmp_path, *args: str) -> int:
    return main(["train", "--dataset", DATA, "-o", str(tmp_path / "runs"), *FAST, *args])


def _run_dirs(tmp_path):
    return sorted(p.parent for p in (tmp_path / "runs").glob("*/config.yaml"))


def test_train_writes_a_complete_run_folder_and_mlflow_run(tmp_path, capsys):
    assert _train(tmp_path, "--model", "bpr", "--model", "pop") == 0
    out = capsys.readouterr().out
    assert "recall@10" in out and "bpr" in out and "pop" in out
    runs = _run_dirs(tmp_path)
    assert len(runs) == 2
    run = next(r for r in runs if r.name.startswith("bpr"))
    assert f"run folder: {run}" in out
    for name in (
        "config.yaml",
        "metrics.json",
        "split.npz",
        "history.json",
        "recommendations.csv",
        "train.log",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
    ):
        assert (run / name).is_file(), name
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == {"name": "bpr", "embedding_size": 64, "reg_weight": 0.0}
    assert config["train"]["epochs"] == 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) >= {
        "recall_at_10",
        "ndcg_at_20",
        "map_at_10",
        "item_coverage_at_10",
    }
    assert len(json.loads((run / "history.json").read_text())) == 3
    recs = pd.read_csv(run / "recommendations.csv", dtype={"user": str, "item": str})
    assert list(recs.columns) == ["user", "item", "rank", "score"]
    assert recs.groupby("user").size().max() == 10

    # the MLflow run in the default local store has params, per-epoch and final metrics
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")
    run_id = json.loads((run / "run.json").read_text())["tracking_run_id"]
    record = client.get_run(run_id)
    assert record.info.status == "FINISHED"
    assert record.data.params["model.embedding_size"] == "64"
    assert len(client.get_metric_history(run_id, "valid/ndcg_at_10")) == 3
    assert record.data.metrics["test/recall_at_10"] == pytest.approx(
        metrics["test"]["recall_at_10"]
    )
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.json", "recommendations.csv", "config.yaml"} <= artifacts


def test_evaluate_and_recommend_from_a_run_folder(tmp_path, capsys):
    assert _train(tmp_path, "--model", "lightgcn", "--no-tracking") == 0
    run = _run_dirs(tmp_path)[0]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "metrics.json").read_text())
    assert again["test"]["ndcg_at_10"] == pytest.approx(saved["test"]["ndcg_at_10"])

    recs_path = tmp_path / "recs.csv"
    users = pd.read_csv(run / "recommendations.csv", dtype=str)["user"].unique()[:2]
    args = ["recommend", str(run), "-k", "5", "-o", str(recs_path)]
    assert main([*args, "--user", users[0], "--user", users[1]]) == 0
    recs = pd.read_csv(recs_path, dtype={"user": str, "item": str})
    assert recs["user"].tolist() == [users[0]] * 5 + [users[1]] * 5
    assert recs["rank"].tolist() == [1, 2, 3, 4, 5] * 2
    assert recs.groupby("user")["score"].is_monotonic_decreasing.all()

    assert main(["recommend", str(run), "--user", "no-such-user"]) == 2
    assert "unknown user id 'no-such-user'" in capsys.readouterr().err


def test_resume_finishes_an_interrupted_run(tmp_path, capsys):
    assert _train(tmp_path, "--model", "bpr", "--no-tracking", "--set", "train.epochs=2") == 0
    run = _run_dirs(tmp_path)[0]
    # pretend the run was stopped after 2 of 4 epochs: raise the limit and resume
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["epochs"] = 4
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert len(json.loads((run / "history.json").read_text())) == 4


def test_config_file_and_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        data: {{name: {DATA}}}
        model: {{name: bpr, embedding_size: 8}}
        train: {{epochs: 2, valid_metric: recall_at_20}}
        tracking: {{enabled: false}}
        output_dir: {tmp_path / "runs"}
        """)
    )
    assert main(["train", "-c", str(config), "--set", "model.embedding_size=16", "--quiet"]) == 0
    saved = yaml.safe_load((_run_dirs(tmp_path)[0] / "config.yaml").read_text())
    assert saved["model"]["embedding_size"] == 16
    assert saved["train"]["valid_metric"] == "recall_at_20"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.learnin_rate=0.1"], "unknown key 'train.learnin_rate'"),
        (["--set", "model.embeding_size=3"], "unknown key 'model.embeding_size'"),
        (["--set", "train.learning_rate=-1"], "train.learning_rate"),
        (["--set", "train.valid_metric=ndcg_at_50"], "ndcg_at_50"),
        (["--set", "nonsense"], "not of the form key=value"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--dataset", "no-such-dataset"], "no-such-dataset"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path, capsys, args, message):
    code = main(
        [
            "train",
            "--dataset",
            DATA,
            "--model",
            "bpr",
            "-o",
            str(tmp_path / "runs"),
            "--no-tracking",
            *args,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_unreachable_tracking_server_fails_before_training(tmp_path, capsys):
    code = _train(tmp_path, "--model", "bpr", "--tracking-uri", "http://127.0.0.1:9")
    err = capsys.readouterr().err
    assert code == 2
    assert "http://127.0.0.1:9" in err
    assert not (tmp_path / "runs").exists() or not _run_dirs(tmp_path)


@pytest.mark.network
def test_train_logs_to_a_live_mlflow_server(tmp_path, mlflow_server):
    assert _train(tmp_path, "--model", "pop", "--tracking-uri", mlflow_server) == 0
    run = _run_dirs(tmp_path)[0]
    run_id = json.loads((run / "run.json").read_text())["tracking_run_id"]
    record = mlflow.MlflowClient(mlflow_server).get_run(run_id)
    assert record.info.status == "FINISHED"
    assert "test/ndcg_at_10" in record.data.metrics


def test_models_lists_builtins_with_params(capsys):
    assert main(["models", "--params"]) == 0
    out = capsys.readouterr().out
    for name in ("pop", "itemknn", "bpr", "lightgcn"):
        assert name in out
    assert "embedding_size = 64" in out


def test_data_commands(capsys):
    assert main(["data", "list"]) == 0
    listed = capsys.readouterr().out
    for name in (
        "ml-100k",
        "ml-1m",
        "ml-20m",
        "gowalla",
        "yelp2018",
        "amazon-book",
        "baby",
        "sports",
        "clothing",
    ):
        assert name in listed
    assert main(["data", "stats", "ml-100k", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert main(["data", "stats", "ml-100k", "--json", "--set", "rating_threshold=4"]) == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == 55375
    assert main(["data", "prepare", "synthetic-50x40x300"]) == 2
    assert "is generated on the fly, so there is nothing to download" in capsys.readouterr().err


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert "recsys" in capsys.readouterr().out
    assert main(["train", "--help"]) == 0
    assert "--set" in capsys.readouterr().out


def test_device_option(tmp_path, capsys):
    assert _train(tmp_path, "--model", "lightgcn", "--no-tracking", "--device", "cpu") == 0
    run = _run_dirs(tmp_path)[0]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["device"] == "cpu"
    assert main(["evaluate", str(run), "--device", "cpu", "--json"]) == 0
    assert main(["recommend", str(run), "--device", "cpu", "-k", "3", "-u", "0"]) == 0
    if torch.cuda.is_available():  # pragma: no cover - CI has no GPU
        return
    capsys.readouterr()
    assert main(["evaluate", str(run), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    code = main(
        [
            "train",
            "--dataset",
            DATA,
            "--model",
            "bpr",
            "--device",
            "cuda:0",
            "-o",
            str(tmp_path / "gpu-runs"),
            "--no-tracking",
        ]
    )
    assert code == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "gpu-runs").exists()


def test_models_are_all_checked_before_the_first_trains(tmp_path, capsys):
    code = _train(tmp_path, "--no-tracking", "--model", "bpr", "--model", "no-such-model")
    assert code == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # bpr did not train first


def test_zero_epochs_is_a_config_error(tmp_path, capsys):
    code = _train(tmp_path, "--no-tracking", "--model", "bpr", "--set", "train.epochs=0")
    assert code == 2
    assert "train.epochs" in capsys.readouterr().err


def test_a_config_file_with_a_value_where_a_section_belongs(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  name: pop\ntrain: 5\n")
    assert main(["train", "-c", str(config), "--no-tracking", "--quiet"]) == 2
    assert f"config file {config}: 'train' must be a section" in capsys.readouterr().err


def test_config_files_that_are_folders_or_not_text(tmp_path, capsys):
    assert main(["train", "-c", str(tmp_path), "--no-tracking"]) == 2
    assert f"config file {tmp_path} is a folder" in capsys.readouterr().err
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"model:\xff\xfe\x00 bpr\n")
    assert main(["train", "-c", str(binary), "--no-tracking"]) == 2
    assert f"config file {binary} is not UTF-8 text" in capsys.readouterr().err


def test_an_output_path_that_cannot_be_written_is_a_user_error(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    code = _train(tmp_path, "--no-tracking", "--model", "pop", "-o", str(a_file / "runs"))
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: {a_file / 'runs'}" in err and "Traceback" not in err


def test_an_unexpected_exception_is_a_bug_with_exit_status_3(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something recsys did not expect")

    monkeypatch.setattr("recsys.experiment.train_run", broken)
    code = _train(tmp_path, "--no-tracking", "--model", "pop")
    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" in err and "RuntimeError: something recsys did not expect" in err
    assert "error: an internal error in recsys" in err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    assert _train(root, "--no-tracking", "--model", "bpr") == 0
    (run,) = _run_dirs(root)
    return run


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda run: (run / "config.yaml").write_text("model: [\n"),
            "config.yaml is not valid YAML",
        ),
        (
            lambda run: (run / "config.yaml").write_text(
                (run / "config.yaml").read_text().replace("train:\n", "train:\n  bogus: 1\n")
            ),
            "config.yaml: unknown key 'train.bogus'",
        ),
        (
            lambda run: (run / "split.npz").write_bytes(b"junk"),
            "split.npz cannot be read as a saved split",
        ),
        (
            lambda run: (run / "checkpoints" / "best.pt").write_bytes(b""),
            "best.pt cannot be read (corrupt, truncated or not a recsys checkpoint)",
        ),
        (
            lambda run: (run / "config.yaml").write_text(
                (run / "config.yaml").read_text().replace("embedding_size: 64", "embedding_size: 8")
            ),
            "best.pt does not fit the BPR model its run config builds",
        ),
    ],
    ids=["yaml", "unknown-key", "split", "checkpoint", "mismatch"],
)
def test_a_damaged_run_folder_is_a_clear_error(trained_run, tmp_path, capsys, damage, message):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    damage(run)
    for command in (["evaluate", str(run)], ["recommend", str(run), "-u", "1"]):
        assert main([*command]) == 2, command
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_users_file_with_a_bom_or_bad_bytes_or_no_ids(trained_run, tmp_path, capsys):
    user = pd.read_csv(trained_run / "recommendations.csv", dtype=str)["user"].iloc[0]
    listed = tmp_path / "users.txt"
    listed.write_bytes(b"\xef\xbb\xbf" + f"{user}\n".encode())  # a spreadsheet's BOM
    assert main(["recommend", str(trained_run), "--users-file", str(listed), "-k", "3"]) == 0
    recs = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype=str)
    assert recs["user"].tolist() == [user] * 3
    listed.write_bytes(b"\xff\xfe1\n")
    assert main(["recommend", str(trained_run), "--users-file", str(listed)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
    listed.write_text("\n\n")
    assert main(["recommend", str(trained_run), "--users-file", str(listed)]) == 2
    assert "lists no user ids" in capsys.readouterr().err


def test_resume_from_a_checkpoint_that_does_not_fit_is_a_clear_error(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("embedding_size: 64", "embedding_size: 8"))
    assert main(["train", "--resume", str(run), "--no-tracking", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "last.pt does not fit the BPR model its run config builds" in err
    assert "Traceback" not in err


def test_a_relative_data_path_still_works_from_another_directory(tmp_path, capsys, monkeypatch):
    # the run folder records the config; the path in it must not depend on where train ran
    work = tmp_path / "work"
    work.mkdir()
    rows = "\n".join(f"{u},{(u * 7 + k) % 40}" for u in range(60) for k in range(12))
    (work / "inter.csv").write_text("user,item\n" + rows + "\n")
    monkeypatch.chdir(work)
    code = main(["train", "--model", "pop", "--no-tracking", "--quiet", "-o", "runs",
                 "--set", "data.path=inter.csv", "--set", "data.columns.user=user",
                 "--set", "data.columns.item=item"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (run_dir,) = (work / "runs").iterdir()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["path"] == str(work / "inter.csv")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", str(run_dir)]) == 0, capsys.readouterr().err


def test_resume_continues_the_same_mlflow_run(tmp_path, capsys):
    assert _train(tmp_path, "--model", "bpr", "--set", "train.epochs=2") == 0
    run = _run_dirs(tmp_path)[0]
    first = json.loads((run / "run.json").read_text())
    assert first["tracking_uri"].startswith("sqlite:///")
    assert first["status"] == "finished"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["epochs"] = 4
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "run.json").read_text()) == first
    client = mlflow.MlflowClient(tracking_uri=first["tracking_uri"])
    runs = client.search_runs([client.get_experiment_by_name("recsys").experiment_id])
    assert [r.info.run_id for r in runs] == [first["tracking_run_id"]]
    assert runs[0].info.status == "FINISHED"
    history = client.get_metric_history(first["tracking_run_id"], "valid/ndcg_at_10")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]


def test_runs_started_together_get_folders_of_their_own(tmp_path):
    """The folder name is claimed by mkdir: racing runs with one name never share a folder
    nor fail (an exists-then-mkdir check let the second one die with 'File exists')."""
    from concurrent.futures import ThreadPoolExecutor

    from recsys.config import build_run_config
    from recsys.experiment import new_run_dir

    cfg = build_run_config(None, ["run_name=same"], output_dir=str(tmp_path / "runs"))
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: new_run_dir(cfg, "data"), range(16)))
    assert len(set(folders)) == 16
    assert sorted(p.name for p in folders) == sorted(["same", *(f"same-{k}" for k in range(2, 17))])


def test_a_run_folder_made_by_another_process_in_the_meantime_is_not_reused(tmp_path, monkeypatch):
    from pathlib import Path

    from recsys.config import build_run_config
    from recsys.experiment import new_run_dir

    cfg = build_run_config(None, ["run_name=same"], output_dir=str(tmp_path / "runs"))
    (tmp_path / "runs" / "same").mkdir(parents=True)
    # as if the other run made it just after this one looked
    monkeypatch.setattr(Path, "exists", lambda self: False)
    assert new_run_dir(cfg, "data").name == "same-2"
