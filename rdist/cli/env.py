"""`rdist env`: what a bug report needs to say about the machine: versions, devices, and where rdist keeps things."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import typer

from rdist.cli.common import console, print_json, user_errors

# The packages whose versions decide what rdist does, beyond torch: required ones, then the optional extras.
PACKAGES = ("torchvision", "numpy", "typer", "safetensors", "huggingface_hub", "robustbench", "pyautoattack",
            "onnx", "onnxscript", "onnxruntime", "pydantic")
OPTIONAL = {"tensorboard": "rdist[tensorboard]: --log tensorboard", "wandb": "rdist[wandb]: --log wandb"}


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Everything `rdist env` reports, as plain values."""
    import torch

    from rdist.data import DATA_DIR_ENV
    from rdist.files import cache_dir
    from rdist.teachers.robustbench import model_dir
    from rdist.zoo import ZOO

    cuda = torch.cuda.is_available()
    gpus = [{"index": i, "name": torch.cuda.get_device_name(i),
             "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
            for i in range(torch.cuda.device_count())] if cuda else []
    try:
        from huggingface_hub import constants

        hub_cache, endpoint = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE, \
            os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    except ImportError:
        hub_cache = endpoint = None
    return {
        "rdist": _version("rdist"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": {"available": cuda, "torch_built_with": torch.version.cuda,
                 "cudnn": torch.backends.cudnn.version() if cuda else None, "gpus": gpus},
        "cpu_threads": torch.get_num_threads(),
        "packages": {name: _version(name) for name in PACKAGES},
        "optional": {name: _version(name) for name in OPTIONAL},
        "paths": {"cache": str(cache_dir()), "data": os.environ.get(DATA_DIR_ENV) or str(cache_dir() / "data"), "robustbench_checkpoints": str(model_dir()),
                  "teachers": str(cache_dir() / "teachers"), "hub_cache": hub_cache, "hub_endpoint": endpoint,
                  "zoo": str(ZOO.path())},
        "environment": {name: os.environ.get(name) for name in
                        ("RDIST_CACHE", DATA_DIR_ENV, "RDIST_ZOO", "HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT",
                         "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS") if os.environ.get(name)},
    }


@user_errors
def env(json_out: bool = typer.Option(False, "--json", help="print it as JSON")) -> None:
    """Print rdist's and Python's versions, torch with CUDA and the GPUs, the packages rdist relies on (the optional
    ones too), and the folders it keeps datasets, teachers and Hub downloads in: what a bug report needs.

    Example: rdist env
    """
    info = environment()
    if json_out:
        print_json(info)
        return
    cuda = info["cuda"]
    gpus = ", ".join(f"{g['index']}: {g['name']} ({g['memory_gib']} GiB)" for g in cuda["gpus"]) or "none"
    rows = [("rdist", info["rdist"]), ("python", f"{info['python']} ({info['platform']})"),
            ("torch", f"{info['torch']} (CUDA {cuda['torch_built_with'] or 'none'} build; "
                      f"{'CUDA available' if cuda['available'] else 'no CUDA device'})"),
            ("gpus", gpus), ("cpu threads", str(info["cpu_threads"]))]
    rows += [(name, v or "not installed") for name, v in info["packages"].items()]
    rows += [(f"{name} (optional)", v or f"not installed: pip install '{OPTIONAL[name].split(':')[0]}'")
             for name, v in info["optional"].items()]
    rows += [(f"{name.replace('_', ' ')}", v or "-") for name, v in info["paths"].items()]
    rows += [(f"${name}", v) for name, v in info["environment"].items()]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        console.print(f"{name:<{width}}  {value}", highlight=False, soft_wrap=True, markup=False)
