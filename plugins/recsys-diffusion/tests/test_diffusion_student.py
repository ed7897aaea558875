"""The distilled student: CLI training of teacher then students, output shape and determinism,
checkpoint round trip without the teacher's weights, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from recsys_diffusion import DiffRecStudent

from recsys.cli import main
from recsys.errors import ConfigError
from recsys.experiment import load_run
from recsys.models.registry import create_model
from recsys.train.trainer import TrainConfig, Trainer

DATA = "synthetic-120x80x2400"
COMMON = ["--dataset", DATA, "--no-tracking", "--quiet", "--set", "train.num_threads=1"]
FAST = ["--set", "train.epochs=3", "--set", "train.batch_size=32"]
METHODS = ["free", "regression", "boot", "consistency"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("data-cache")))
    monkeypatch.delenv("RECSYS_TRACKING_URI", raising=False)
    torch.set_num_threads(1)


def _train(out: Path, *args: str) -> Path:
    before = set(out.glob("*/config.yaml"))
    assert main(["train", "-o", str(out), *COMMON, *FAST, *args]) == 0
    (new,) = set(out.glob("*/config.yaml")) - before
    return new.parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A small diffrec teacher and one student per method, all through `recsys train`."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RECSYS_DATA_DIR", str(tmp_path_factory.mktemp("data-cache-runs")))
    out = tmp_path_factory.mktemp("runs")
    try:
        teacher = _train(
            out,
            "--model",
            "diffrec",
            "--set",
            "model.hidden_dims=[32]",
            "--set",
            "model.emb_size=4",
        )
        found = {"teacher": teacher}
        for method in METHODS:
            found[method] = _train(
                out,
                "--model",
                "diffrec_student",
                "--set",
                f"model.teacher={teacher}",
                "--set",
                f"model.method={method}",
            )
        yield found
    finally:
        mp.undo()


def test_cli_trains_teacher_then_each_student(runs):
    for method in METHODS:
        metrics = json.loads((runs[method] / "metrics.json").read_text())
        assert metrics["model"] == "diffrec_student"
        assert 0.0 <= metrics["test"]["recall_at_20"] <= 1.0
        assert (runs[method] / "checkpoints" / "best.pt").is_file()
    # free is not trained: one closed-form "epoch"
    assert json.loads((runs["free"] / "metrics.json").read_text())["epochs_run"] == 1


def test_free_student_is_one_teacher_call_at_t_max(runs):
    _, _, split, teacher = load_run(runs["teacher"])
    _, _, _, free = load_run(runs["free"])
    rows = torch.from_numpy(split.train[np.arange(20)].toarray().astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(free.one_step(rows), teacher.reverse(rows, n_calls=1))
        # and not the T-step output
        assert not torch.allclose(free.one_step(rows), teacher.reverse(rows))


def test_student_output_shape_and_determinism(runs):
    _, _, split, student = load_run(runs["consistency"])
    users = torch.arange(17)
    scores = student.score(users)
    assert scores.shape == (17, split.shape[1])
    assert torch.isfinite(scores).all()
    student.train()  # dropout and training mode do not touch scoring
    assert torch.equal(student.score(users), scores)
    _, _, _, again = load_run(runs["consistency"])
    assert torch.equal(again.score(users), scores)


def test_regression_student_moves_toward_the_teacher(runs):
    _, _, split, teacher = load_run(runs["teacher"])
    rows = torch.from_numpy(split.train.toarray().astype(np.float32))
    with torch.no_grad():
        target = teacher.reverse(rows)
        gaps = {
            m: float((load_run(runs[m])[3].one_step(rows) - target).pow(2).mean())
            for m in ("free", "regression")
        }
    assert gaps["regression"] < gaps["free"]


def test_student_checkpoint_has_no_teacher_and_reloads_without_its_weights(runs, tmp_path):
    state = torch.load(runs["consistency"] / "checkpoints" / "best.pt", weights_only=True)
    keys = set(state["model"])
    assert not any(k.startswith(("teacher", "_teacher")) for k in keys)
    assert {"net.time_proj.weight", "target_net.time_proj.weight", "ema_updates"} <= keys
    assert int(state["model"]["initialised"]) == 1

    # move the teacher's folder, keeping only its config: the student still scores the same
    _, _, _, student = load_run(runs["boot"])
    users = torch.arange(30)
    expected = student.score(users)
    teacher_copy = tmp_path / "teacher"
    shutil.copytree(runs["teacher"], teacher_copy)
    student_copy = tmp_path / "student"
    shutil.copytree(runs["boot"], student_copy)
    config = (student_copy / "config.yaml").read_text()
    (student_copy / "config.yaml").write_text(
        config.replace(str(runs["teacher"]), str(teacher_copy))
    )
    shutil.rmtree(teacher_copy / "checkpoints")
    _, _, _, reloaded = load_run(student_copy)
    assert torch.equal(reloaded.score(users), expected)


def test_evaluate_and_recommend_accept_a_student_run(runs, capsys, tmp_path):
    assert main(["evaluate", str(runs["regression"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    metrics = json.loads((runs["regression"] / "metrics.json").read_text())
    assert out["test"]["recall_at_20"] == pytest.approx(metrics["test"]["recall_at_20"])
    target = tmp_path / "recs.csv"
    assert main(["recommend", str(runs["regression"]), "-k", "5", "-o", str(target)]) == 0
    recs = pd.read_csv(target)
    assert recs.groupby("user").size().max() == 5


def test_student_config_errors_name_the_key(runs, tmp_path):
    with pytest.raises(ConfigError, match="model.teacher"):
        create_model("diffrec_student", method="regression")
    with pytest.raises(ConfigError, match="method=direct"):
        create_model("diffrec_student", teacher=str(runs["teacher"]))
    _, _, split, _ = load_run(runs["teacher"])
    missing = DiffRecStudent(teacher=str(tmp_path / "nope"), method="boot")
    with pytest.raises(ConfigError, match="does not exist"):
        missing.setup(split.train)
    not_diffrec = DiffRecStudent(teacher=str(runs["free"]), method="boot")
    with pytest.raises(ConfigError, match="'diffrec' teacher"):
        not_diffrec.setup(split.train)
    # a teacher trained on other training rows would leak held-out items into the student
    other = split.train.copy().tolil()
    other[0, int(np.flatnonzero(other[[0]].toarray()[0] == 0)[0])] = 1
    student = DiffRecStudent(teacher=str(runs["teacher"]), method="regression")
    student.setup(other.tocsr())
    with pytest.raises(ConfigError, match="different training split"):
        student.teacher()


def test_recommendations_file_of_a_student_run(runs):
    recs = pd.read_csv(runs["boot"] / "recommendations.csv", dtype={"user": str, "item": str})
    assert list(recs.columns) == ["user", "item", "rank", "score"]
    assert recs.groupby("user").size().max() == 10


@pytest.mark.parametrize("method", ["consistency", "boot"])
def test_student_resume_is_exact(method, runs, tmp_path):
    """Two epochs, stop, two more from last.pt == four uninterrupted (EMA target, counters)."""
    _, _, split, _ = load_run(runs["teacher"])

    def fit(epochs: int, folder: str, resume: bool = False) -> DiffRecStudent:
        model = DiffRecStudent(teacher=str(runs["teacher"]), method=method)
        cfg = TrainConfig(
            epochs=epochs, batch_size=32, eval_every=10, progress=False, seed=5, num_threads=1
        )
        Trainer(model, split, cfg, checkpoint_dir=tmp_path / folder).fit(resume=resume)
        return model

    fit(4, "a")
    fit(2, "b")
    fit(4, "b", resume=True)
    # the final training states (the returned models are each run's best validation epoch)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    if method == "consistency":
        assert int(a["ema_updates"]) == 4 * int(np.ceil(split.shape[0] / 32))


def test_teacher_given_as_a_checkpoint_file(runs):
    _, _, split, teacher = load_run(runs["teacher"])
    student = DiffRecStudent(
        teacher=str(runs["teacher"] / "checkpoints" / "best.pt"), method="regression"
    ).setup(split.train)
    student.train()
    rows = torch.from_numpy(split.train[np.arange(8)].toarray().astype(np.float32))
    terms = student.loss({"rows": rows})
    assert set(terms) == {"regression"} and torch.isfinite(terms["regression"])
    # the first training batch copied the teacher's weights in
    assert int(student.initialised) == 1
    for key, value in teacher.denoiser.state_dict().items():
        assert torch.equal(student.net.state_dict()[key], value), key


def _train_code(out: Path, *args: str) -> int:
    return main(["train", "-o", str(out), *COMMON, *FAST, *args])


def test_teacher_run_without_a_best_checkpoint_names_model_teacher(runs, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    shutil.copytree(runs["teacher"], teacher)
    shutil.rmtree(teacher / "checkpoints")
    args = ["--model", "diffrec_student", "--set", f"model.teacher={teacher}"]
    assert _train_code(tmp_path / "out", *args, "--set", "model.method=regression") == 2
    err = capsys.readouterr().err
    assert "error: model.teacher=" in err and "best.pt does not exist" in err


def test_teacher_run_without_its_split_is_refused(runs, tmp_path, capsys):
    # without split.npz the leak check was skipped: a student on another split trained
    teacher = tmp_path / "teacher"
    shutil.copytree(runs["teacher"], teacher)
    (teacher / "split.npz").unlink()
    args = ["--model", "diffrec_student", "--set", f"model.teacher={teacher}"]
    code = _train_code(tmp_path / "out", *args, "--set", "model.method=boot")
    err = capsys.readouterr().err
    assert code == 2 and "model.teacher=" in err and "split.npz is missing" in err
    assert not list((tmp_path / "out").glob("*/metrics.json"))


def test_teacher_checkpoint_inside_a_run_folder_is_checked_for_its_split(runs, tmp_path, capsys):
    # a checkpoint path skipped the split check that its own run folder gets
    ckpt = runs["teacher"] / "checkpoints" / "best.pt"
    args = ["--model", "diffrec_student", "--set", f"model.teacher={ckpt}"]
    code = _train_code(
        tmp_path / "out", *args, "--set", "model.method=boot", "--set", "split.seed=5"
    )
    err = capsys.readouterr().err
    assert code == 2 and "different training split" in err
    assert not list((tmp_path / "out").glob("*/metrics.json"))


def test_a_relative_teacher_path_is_recorded_absolute(tmp_path, monkeypatch):
    # the student's run config must still find its teacher from another working directory
    from recsys_diffusion.student import DiffRecStudentConfig

    from recsys.models.base import build_config

    monkeypatch.chdir(tmp_path)
    config = build_config(DiffRecStudentConfig, {"teacher": "runs/teacher", "method": "boot"})
    assert config.teacher == str(tmp_path / "runs" / "teacher")
