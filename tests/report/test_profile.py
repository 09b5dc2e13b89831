"""Parameters, MACs and latency: checked against counts done by hand."""

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


def test_latency_is_a_median_in_milliseconds():
    slow = nn.Sequential(*[nn.Conv2d(8, 8, 3, padding=1) for _ in range(8)])
    fast = nn.Sequential(nn.Conv2d(8, 8, 1))
    assert latency_ms(slow, (8, 32, 32), "cpu", runs=5) > latency_ms(fast, (8, 32, 32), "cpu", runs=5)


@pytest.mark.parametrize("value, text", [(24058, "24.1k"), (1789184, "1.79M"), (555422720, "555M"), (812, "812"),
                                         (2_500_000_000, "2.5G")])
def test_format_count(value, text):
    assert format_count(value) == text
