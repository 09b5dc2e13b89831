"""Every method of the registry trains through the one engine loop, and its training loss falls."""

from __future__ import annotations

import math
import statistics

import pytest

from rdist.artifact import read_metadata
from rdist.engine import Callback, TrainConfig, train
from rdist.methods import list_methods, method_class

STEPS = 36  # one epoch of the digits training split at batch 32


class LossRecorder(Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_step(self, info) -> None:
        self.losses.extend(info.losses)  # the steps since the previous report (one read of the device)


@pytest.mark.e2e
@pytest.mark.parametrize("method", list_methods())
def test_first_epoch_lowers_the_training_loss(method, robust_teacher, natural_teacher, tmp_path):
    cls = method_class(method)
    recorder = LossRecorder()
    # The first epoch of a 10-epoch schedule: IGDM's ramp (epoch / E) starts small there, as in the papers' runs.
    result = train(TrainConfig(
        method=method, student="smallcnn", data="digits", epochs=10, max_steps=STEPS, batch_size=32, attack_steps=3,
        eval_n=32, teachers={role: str({"robust": robust_teacher, "natural": natural_teacher}[role])
                             for role in cls.teachers}, out=str(tmp_path)), recorder)

    losses = recorder.losses
    assert len(losses) == STEPS and result.global_step == STEPS and result.stopped_by == "max_steps"
    assert all(math.isfinite(v) for v in losses)
    third = STEPS // 3
    first, last = statistics.mean(losses[:third]), statistics.mean(losses[-third:])
    # Seeded and deterministic; across seeds 0-2 the worst ratio measured was 0.88 (rslad+igdm).
    assert last < 0.95 * first, f"{method}: mean loss {first:.4f} in the first {third} steps, {last:.4f} in the last"
    meta = read_metadata(result.last_path)
    assert meta["provenance"]["method"] == method
    assert meta["provenance"]["method_config"]["method"] == method
