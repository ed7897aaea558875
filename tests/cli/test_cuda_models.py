"""Every registered model, built-in and plugin, trained through `recsys train --device cuda`.

CPU tests cannot see a tensor made on the wrong device, a buffer that `.to()` does not move, or
a CPU generator fed to a CUDA op; these tests can. They need CUDA, so CI (which has none) skips
them; they run where a GPU is (the lent GPU machine: see benchmarks/results/tune_gpu_check.md).
Each run then reloads on the CPU and on the GPU: the two score alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recsys.cli import main
from recsys.experiment import load_run
from recsys.models.registry import list_models

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

DATA = "synthetic-120x80x2400"
COMMON = ["--dataset", DATA, "--no-tracking", "--quiet", "--device", "cuda"]
FAST = ["--set", "train.epochs=2", "--set", "train.batch_size=64"]
# diffrec_student trains here in its teacher-free form; the distilled form has its own test
MODELS = sorted(info.name for info in list_models())


def _train(out: Path, *args: str) -> Path:
    before = set(out.glob("*/config.yaml"))
    assert main(["train", "-o", str(out), *COMMON, *FAST, *args]) == 0
    (new,) = set(out.glob("*/config.yaml")) - before
    return new.parent


def _check_scores_alike_on_both_devices(run: Path) -> None:
    *_, on_gpu = load_run(run, device="cuda")
    *_, on_cpu = load_run(run, device="cpu")
    assert {p.device.type for p in on_gpu.parameters()} <= {"cuda"}
    users = torch.arange(16)
    gpu_scores = on_gpu.score(users.cuda())
    assert gpu_scores.device.type == "cuda" and torch.isfinite(gpu_scores).all()
    torch.testing.assert_close(gpu_scores.cpu(), on_cpu.score(users), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_on_cuda_and_scores_alike_on_the_cpu(name, tmp_path):
    run = _train(tmp_path, "--model", name)
    _check_scores_alike_on_both_devices(run)


DNIS_PHASES = ["--set", "train.epochs=5", "--set", "model.warm_start_epochs=1",
               "--set", "model.search_epochs=2"]  # fmt: skip
VARIANTS = {
    # DNIS through warm start, search, pruning and fine-tuning, on each kind of base
    "dnis-bpr": ["--model", "dnis", *DNIS_PHASES],
    "dnis-lightgcn-nested-adam": ["--model", "dnis", *DNIS_PHASES, "--set", "model.base=lightgcn",
                                  "--set", "model.structure=nested",
                                  "--set", "model.alpha_optimizer=adam"],
    "dnis-twotower-scratch": ["--model", "dnis", *DNIS_PHASES, "--set", "model.base=twotower",
                              "--set", "model.finetune_from=scratch",
                              "--set", "model.search_dense=false"],
    "dnis-mde": ["--model", "dnis", *DNIS_PHASES, "--set", "model.mde_exponent=0.5"],
    "dnis-budget": ["--model", "dnis", *DNIS_PHASES, "--set", "model.param_budget=4000",
                    "--set", "model.min_dim=2"],
    "twotower-rfm-logq-history": ["--model", "twotower", "--set", "model.ssl=rfm",
                                  "--set", "model.logq_correction=true",
                                  "--set", "model.history=true"],
    "bm3-frozen-features": ["--model", "bm3", "--set", "model.train_features=false"],
    "bpr-sparse-adam": ["--model", "bpr", "--set", "train.optimizer=sparse_adam"],
}  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS)
def test_model_options_train_on_cuda(variant, tmp_path):
    run = _train(tmp_path, *VARIANTS[variant])
    _check_scores_alike_on_both_devices(run)


@pytest.mark.skipif(
    not any(info.name == "diffrec_student" for info in list_models()),
    reason="recsys-diffusion is not installed",
)
def test_distilled_student_trains_on_cuda_from_a_cuda_teacher(tmp_path):
    teacher = _train(tmp_path, "--model", "diffrec", "--set", "model.hidden_dims=[32]")
    student = _train(
        tmp_path,
        "--model",
        "diffrec_student",
        "--set",
        "model.method=regression",
        "--set",
        f"model.teacher={teacher}",
    )
    _check_scores_alike_on_both_devices(student)


def test_a_cuda_run_is_evaluated_exported_and_probed(tmp_path):
    run = _train(tmp_path, "--model", "lightgcn")
    assert main(["evaluate", str(run), "--json"]) == 0  # on the run's device, cuda
    assert main(["recommend", str(run), "-k", "3", "-u", "0"]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 0
    report = tmp_path / "probe"
    assert main(["probe", str(run), "--no-tracking", "--quiet", "--epochs", "3",
                 "-o", str(report)]) == 0  # fmt: skip
    assert (report / "report.json").is_file()
