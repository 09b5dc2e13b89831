"""The whole pipeline, small enough for two CPU cores in a few minutes, on scikit-learn's digits:
train a robust teacher with TRADES, distil two smaller students with RSLAD and ARD, compare all three."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from rdist.engine import Callback, TrainConfig, train
from rdist.errors import RdistError
from rdist.methods import ROBUST
from rdist.report.compare import Comparison, compare_models
from rdist.report.config import EvalConfig

# Digits have 17 grey levels, about 16/255 apart: at 8/255 a naturally trained smallcnn still has 97%
# accuracy under PGD-20 (98% clean), so the quickstart uses 32/255 with attack steps of 8/255.
EPS = 32 / 255
STEP_SIZE = 8 / 255
ATTACKS = "clean,pgd20,aa:apgd-ce+apgd-t"
TEST_IMAGES = 359  # digits' test split


def check_n(n: int) -> None:
    """Refuse, before three models are trained, a number of test images the comparison cannot take."""
    if not 1 <= n <= TEST_IMAGES:
        raise RdistError(f"--n {n}: the comparison attacks 1 to {TEST_IMAGES} digits test images; pass one of those")


@dataclass(frozen=True)
class Stage:
    name: str
    method: str
    arch: str
    epochs: int


TEACHER = Stage("teacher", "trades", "smallcnn", 30)
STUDENTS = (Stage("rslad", "rslad", "tinycnn", 100), Stage("ard", "ard", "tinycnn", 100))


def train_quickstart(out_dir: str | Path, *, device: str | None = "cpu", seed: int = 0,
                     epochs: int | None = None, callback: Callback | None = None,
                     on_stage=lambda stage: None) -> list[Path]:
    """Train the teacher and both students into `out_dir`; returns their best.safetensors paths, teacher first.

    `epochs` replaces every stage's epochs; `on_stage(stage)` is told when each training starts;
    `callback` watches the training runs.
    """
    out_dir = Path(out_dir)
    stages = [replace(s, epochs=epochs) if epochs else s for s in (TEACHER, *STUDENTS)]
    teacher_stage, student_stages = stages[0], stages[1:]
    common = {"data": "digits", "eps": EPS, "step_size": STEP_SIZE, "seed": seed, "device": device,
              "eval_every": 5, "eval_n": 200}
    on_stage(teacher_stage)
    teacher = train(TrainConfig(method=teacher_stage.method, student=teacher_stage.arch,
                                epochs=teacher_stage.epochs, out=str(out_dir / teacher_stage.name), **common),
                    callback)
    models = [teacher.best_path]
    for stage in student_stages:
        on_stage(stage)
        student = train(TrainConfig(method=stage.method, student=stage.arch, teachers={ROBUST: str(teacher.best_path)},
                                    epochs=stage.epochs, out=str(out_dir / stage.name), **common), callback)
        models.append(student.best_path)
    return models


def compare_quickstart(models: list[Path], *, device: str | None = "cpu", seed: int = 0, n: int = TEST_IMAGES,
                       progress=None) -> Comparison:
    """Attack the quickstart's models on digits' test images (clean, PGD-20, APGD-CE/T) and compare them."""
    config = EvalConfig(attacks=ATTACKS, eps=EPS, data="digits", n=n, seed=seed, device=device)
    return compare_models([str(m) for m in models], config, record=True, progress=progress)
