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


def stage_config(stage: Stage, out_dir: str | Path, *, teacher: str | Path | None = None,
                 device: str | None = "cpu", seed: int = 0) -> TrainConfig:
    """The training run of one stage into `out_dir`/`stage.name`: the stage's method, architecture and epochs at the
    quickstart's eps, step size and evaluation; a student distils `teacher`."""
    return TrainConfig(method=stage.method, student=stage.arch, epochs=stage.epochs,
                       out=str(Path(out_dir) / stage.name), teachers={ROBUST: str(teacher)} if teacher else {},
                       data="digits", eps=EPS, step_size=STEP_SIZE, seed=seed, device=device, eval_every=5,
                       eval_n=200)


def train_quickstart(out_dir: str | Path, *, device: str | None = "cpu", seed: int = 0,
                     epochs: int | None = None, callback: Callback | None = None,
                     on_stage=lambda stage: None) -> list[Path]:
    """Train the teacher and both students into `out_dir`; returns their best.safetensors paths, teacher first.

    `epochs` replaces every stage's epochs; `on_stage(stage)` is told when each training starts;
    `callback` watches the training runs.
    """
    stages = [replace(s, epochs=epochs) if epochs else s for s in (TEACHER, *STUDENTS)]
    on_stage(stages[0])
    teacher = train(stage_config(stages[0], out_dir, device=device, seed=seed), callback).best_path
    models = [teacher]
    for stage in stages[1:]:
        on_stage(stage)
        student = train(stage_config(stage, out_dir, teacher=teacher, device=device, seed=seed), callback)
        models.append(student.best_path)
    return models


def compare_quickstart(models: list[Path], *, device: str | None = "cpu", seed: int = 0, n: int = TEST_IMAGES,
                       progress=None) -> Comparison:
    """Attack the quickstart's models on digits' test images (clean, PGD-20, APGD-CE/T) and compare them."""
    config = EvalConfig(attacks=ATTACKS, eps=EPS, data="digits", n=n, seed=seed, device=device)
    return compare_models([str(m) for m in models], config, record=True, progress=progress)
