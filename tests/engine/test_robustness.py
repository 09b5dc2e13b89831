"""What the engine is for: a TRADES teacher it trains, and an RSLAD student it distils from that teacher, are
measurably robust, far above naturally trained models of the same architectures (on digits, in seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

import rdist
from rdist.engine import TrainConfig, train

pytestmark = pytest.mark.e2e

# Digits have 17 grey levels about 16/255 apart, so 8/255 does not move them: attack and train at 32/255.
EPS, STEP_SIZE = 32 / 255, 8 / 255
# PGD-20 accuracy on the 359 test images, measured with SEED 0, 1 and 2:
#   TRADES smallcnn 0.490 0.460 0.457   natural smallcnn 0.058 0.050 0.070   (clean 0.90-0.92 vs 0.96-0.98)
#   RSLAD tinycnn   0.485 0.432 0.451   natural tinycnn  0.072 0.039 0.039   (clean 0.81-0.88 vs 0.92-0.96)
# Every gap is at least 0.38; requiring 0.25 leaves room for other seeds and torch versions.
MARGIN = 0.25
SEED = 0


def _train(out: Path, method: str, arch: str, epochs: int, **overrides) -> Path:
    # Evaluating only the last epoch (eval_every = epochs) keeps the run short and makes it best.safetensors.
    values = dict(method=method, student=arch, data="digits", epochs=epochs, batch_size=64, lr=0.05, eps=EPS,
                  step_size=STEP_SIZE, attack_steps=5, eval_every=epochs, eval_n=64, seed=SEED, out=str(out))
    return train(TrainConfig(**{**values, **overrides})).best_path


def _accuracy(path: Path, digits) -> dict[str, float]:
    model = rdist.load_model(path)
    return rdist.evaluate(model, digits.x_test, digits.y_test, ["clean", "pgd20"], eps=EPS, seed=SEED).accuracy


def test_trades_teacher_and_rslad_student_are_robust(tmp_path):
    digits = rdist.load_dataset("digits")
    teacher = _train(tmp_path / "teacher", "trades", "smallcnn", epochs=5)
    # kl_scale 1: RSLAD's 0.1 matches the official code's element-mean KL on CIFAR; at a tenth of the step size
    # the student would need far more epochs than a test can give it.
    student = _train(tmp_path / "student", "rslad", "tinycnn", epochs=15, teachers={"robust": str(teacher)}, lr=0.1,
                     method_args={"kl_scale": 1.0})
    natural_teacher = _train(tmp_path / "natural-smallcnn", "natural", "smallcnn", epochs=10)
    natural_student = _train(tmp_path / "natural-tinycnn", "natural", "tinycnn", epochs=10)

    robust = {name: _accuracy(path, digits) for name, path in
              [("teacher", teacher), ("student", student), ("natural teacher", natural_teacher),
               ("natural student", natural_student)]}
    summary = {name: {k: round(v, 3) for k, v in acc.items()} for name, acc in robust.items()}
    # The natural baselines are properly trained, so that their lack of robustness is not a lack of training.
    assert robust["natural teacher"]["clean"] > 0.9 and robust["natural student"]["clean"] > 0.9, summary
    assert robust["teacher"]["clean"] > 0.8 and robust["student"]["clean"] > 0.7, summary
    assert robust["teacher"]["pgd20"] > robust["natural teacher"]["pgd20"] + MARGIN, summary
    assert robust["student"]["pgd20"] > robust["natural student"]["pgd20"] + MARGIN, summary
