"""`--teacher` accepts an artifact path, `zoo:NAME`, or the name of a RobustBench teacher (pulled on first use)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rdist.artifact import load_model
from rdist.teachers.catalogue import TEACHERS
from rdist.teachers.robustbench import pull_teacher
from rdist.zoo import ZOO_PREFIX, resolve_model_path


def teacher_path(spec: str, dataset: str | None = None) -> Path:
    """The artifact `spec` names: a file as given, a zoo model pulled and verified, a RobustBench teacher
    converted into the cache on first use (the one for `dataset`, see `teacher_dataset`) and reused after."""
    if spec.startswith(ZOO_PREFIX):
        return resolve_model_path(spec)
    path = Path(spec).expanduser()
    if path.exists() or path.suffix == ".safetensors" or "/" in spec:
        return path  # a missing file is reported by load_model, with its path
    return pull_teacher(spec, teacher_dataset(spec, dataset))


def teacher_dataset(name: str, dataset: str | None) -> str:
    """Which catalogue dataset a RobustBench name means when training on `dataset`.

    A named dataset means itself (svhn then finds no teacher rather than a CIFAR one). With none, or
    an npz file (a CIFAR subset, say), the name decides: its only dataset, else cifar10.
    """
    if dataset and not dataset.startswith("npz:"):
        return dataset
    datasets = sorted(d for n, d in TEACHERS if n == name)
    return datasets[0] if len(datasets) == 1 else "cifar10"


def resolve_teacher(spec: str, device: torch.device | str = "cpu", dataset: str | None = None) -> nn.Module:
    """Load the teacher `spec` names (see `teacher_path`), frozen (no grad) and in eval mode."""
    model = load_model(teacher_path(spec, dataset), device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()
