"""Parameters, MACs and latency: checked against counts done by hand, and latency against a clock the test moves
(no test here times real work)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rdist
from rdist.models import count_macs, count_parameters
from rdist.report.profile import format_count, latency_ms, profile_model


def hand_counted_model() -> nn.Module:
    # conv: 4 output channels x 8x8 positions x (1 input channel x 3x3 kernel) = 2304 MACs;
    # linear: 256 inputs x 10 outputs = 2560 MACs. ReLU and biases are not multiply-accumulates.
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def test_macs_match_a_count_by_hand():
    assert count_macs(hand_counted_model(), (1, 8, 8)) == 2304 + 2560


def test_parameters_match_a_count_by_hand():
    assert count_parameters(hand_counted_model()) == (4 * 9 + 4) + (256 * 10 + 10)


def test_macs_grow_with_the_input_size():
    # Convolutions cost per position: a 16x16 input costs 4x the conv MACs of an 8x8 one.
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1))
    assert count_macs(model, (1, 16, 16)) == 4 * count_macs(model, (1, 8, 8))


def test_profile_of_a_real_architecture():
    model = rdist.create_model("tinycnn", in_channels=1)
    threads = torch.get_num_threads()
    profile = profile_model(model, (1, 8, 8), cpu_threads=1)
    assert torch.get_num_threads() == threads  # measuring must not change the caller's thread count
    assert profile["params"] == sum(p.numel() for p in model.parameters())
    assert profile["macs"] > profile["params"]  # every conv weight is used at many positions
    assert 0 < profile["latency_ms"]["cpu"] < 1000 and math.isfinite(profile["latency_ms"]["cpu"])
    assert ("cuda" in profile["latency_ms"]) == torch.cuda.is_available()
    assert next(model.parameters()).device.type == "cpu"


class Clock:
    """A stand-in for the `time` module whose perf_counter moves only when a `Paced` model runs."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class Paced(nn.Module):
    """Each forward pass takes the next of `seconds` on `clock`, and is recorded with its input's shape."""

    def __init__(self, clock: Clock, seconds: list[float]):
        super().__init__()
        self.clock, self.seconds, self.calls = clock, list(seconds), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((tuple(x.shape), self.training, torch.is_grad_enabled()))
        self.clock.now += self.seconds.pop(0)
        return x


@pytest.mark.parametrize("timed, median_ms", [([0.004, 0.001, 0.250, 0.002, 0.003], 3.0),  # the odd slow run ignored
                                              ([0.001, 0.010, 0.002, 0.003], 2.5)])  # even: the middle two's mean
def test_latency_is_the_median_of_the_timed_runs_in_milliseconds(timed, median_ms, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("rdist.report.profile.time", clock)
    model = Paced(clock, [9.0, 9.0] + timed)  # the warm-up passes: never timed
    assert latency_ms(model, (3, 4, 4), "cpu", warmup=2, runs=len(timed)) == pytest.approx(median_ms, rel=1e-9)
    # 2 + len(timed) single-image forward passes, in eval mode, without autograd
    assert model.calls == [((1, 3, 4, 4), False, False)] * (2 + len(timed)) and not model.seconds


@pytest.mark.parametrize("value, text", [(24058, "24.1k"), (1789184, "1.79M"), (555422720, "555M"), (812, "812"),
                                         (2_500_000_000, "2.5G")])
def test_format_count(value, text):
    assert format_count(value) == text
