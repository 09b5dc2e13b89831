"""What a model costs to ship: parameters, multiply-accumulates at its input size, and latency per image.

What a training run costs is `rdist.engine.cost`."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from rdist import onnx as onnx_runtime
from rdist.models import count_macs, count_parameters, create_model

WARMUP_RUNS = 3
TIMED_RUNS = 10
# One thread: a number that does not depend on how many cores the machine has or how busy they are
# (with more threads than free cores, a forward pass of a tiny model waits milliseconds on a spinning peer).
CPU_THREADS = 1


def format_count(value: float) -> str:
    """A parameter, MAC or FLOP count to three significant digits: 24.1k, 1.79M, 556M, 4.02T."""
    for factor, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def latency_ms(model: nn.Module, input_shape: Sequence[int], device: torch.device | str,
               warmup: int = WARMUP_RUNS, runs: int = TIMED_RUNS) -> float:
    """Median milliseconds of one forward pass at batch size 1 on `device`, after `warmup` untimed passes.

    The model is moved to `device` and stays there. The median ignores the odd run slowed by another process.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.rand(1, *input_shape, device=device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            synchronize()
            started = time.perf_counter()
            model(x)
            synchronize()
            if i >= warmup:
                times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def _cpu_latency_ms(model: nn.Module, input_shape: Sequence[int], cpu_threads: int) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(cpu_threads)
    try:
        return latency_ms(model, input_shape, "cpu")
    finally:
        torch.set_num_threads(threads)


def profile_model(model: nn.Module, input_shape: Sequence[int], cpu_threads: int = CPU_THREADS,
                  all_threads: bool = False) -> dict:
    """Parameters, MACs, and latency per image on the CPU (with `cpu_threads` threads; with `all_threads`
    also on every core, as "cpu_all") and, when CUDA is available, on the GPU. The model ends on the CPU.
    """
    model = model.to("cpu").eval()
    profile = {"params": count_parameters(model), "macs": count_macs(model, input_shape),
               "latency_ms": {"cpu": round(_cpu_latency_ms(model, input_shape, cpu_threads), 4)},
               "cpu_threads": cpu_threads}
    if all_threads:
        profile["latency_ms"]["cpu_all"] = round(_cpu_latency_ms(model, input_shape, onnx_runtime.all_threads()), 4)
        profile["cpu_threads_all"] = onnx_runtime.all_threads()
    if torch.cuda.is_available():
        profile["latency_ms"]["cuda"] = round(latency_ms(model, input_shape, "cuda"), 4)
        model.to("cpu")
    return profile


def profile_onnx(path: str | Path, meta: dict, input_shape: Sequence[int], cpu_threads: int = CPU_THREADS) -> dict:
    """Parameters, MACs and ONNX Runtime latency per image (batch 1, on `cpu_threads` and on all CPU threads).

    Counts are those of the architecture the file was exported from (int8 rounding changes none); a file rdist
    did not write counts the elements of its stored tensors and has no MAC count.
    """
    if meta.get("foreign"):
        params, macs = onnx_runtime.initializer_count(path), None
    else:
        architecture = create_model(**meta["arch"])
        params, macs = count_parameters(architecture), count_macs(architecture, input_shape)
    every = onnx_runtime.all_threads()
    return {"params": params, "macs": macs, "cpu_threads": cpu_threads, "cpu_threads_all": every,
            "latency_ms": {"cpu": round(onnx_runtime.latency_ms(path, input_shape, cpu_threads), 4),
                           "cpu_all": round(onnx_runtime.latency_ms(path, input_shape, every), 4)}}
