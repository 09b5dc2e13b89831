"""Models on disk: one `.safetensors` file whose metadata says everything needed to rebuild and use it.

Metadata layout (JSON, under the safetensors header key "rdist"):
    format: "rdist-model", format_version: 1,
    arch: {name, num_classes, in_channels, mean, std}   -> rdist.models.create_model(**arch)
    input_shape: [C, H, W], dataset: "cifar10" | ...,
    provenance: {method, teacher, epochs, eps, ...}      (when known)
    results: {"<suite key>": {...}}                      (the last robustness reports, by suite/data/eps)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save, save_file
from torch import nn

import rdist.schema as schema
from rdist.errors import RdistError
from rdist.files import atomic_path
from rdist.utils import unknown

FORMAT = "rdist-model"
FORMAT_VERSION = 1
_KEY = "rdist"

# The arguments of rdist.models.create_model, the call that rebuilds the model (a test keeps them equal).
ARCH_FIELDS = {
    "name": schema.text(), "num_classes": schema.integer(1), "in_channels": schema.integer(1),
    "mean": schema.optional(schema.list_of(schema.number())),
    "std": schema.optional(schema.list_of(schema.number(minimum=1e-12))),
}
ARCH_SCHEMA = schema.mapping(ARCH_FIELDS, required=("name", "num_classes", "in_channels"))
# A robustness report as `rdist attack` records it; compare reuses these fields.
REPORT_SCHEMA = schema.mapping({
    "dataset": schema.text(), "attacks": schema.list_of(schema.text()), "eps": schema.number(0),
    "n": schema.integer(1), "accuracy": schema.mapping(other=schema.number(0, 1)), "worst_case": schema.number(0, 1),
}, required=("dataset", "attacks", "eps", "n", "accuracy", "worst_case"), other=schema.anything())
# Provenance is open (each producer adds its own keys); the keys rdist reads back are typed.
PROVENANCE_SCHEMA = schema.mapping({
    **{key: schema.optional(schema.text()) for key in ("method", "teacher", "source", "imported_from")},
    **{key: schema.optional(schema.integer(0)) for key in ("epochs", "epoch")},
}, other=schema.anything())
# Top-level keys beyond these are kept and not checked, so that newer producers can add their own.
METADATA_SCHEMA = schema.mapping({
    "format": schema.text(), "format_version": schema.integer(), "arch": ARCH_SCHEMA,
    "dataset": schema.optional(schema.text()), "input_shape": schema.optional(schema.list_of(schema.integer(1), 3)),
    "provenance": schema.optional(PROVENANCE_SCHEMA), "results": schema.optional(schema.mapping(other=REPORT_SCHEMA)),
    "leaderboard": schema.optional(schema.mapping(other=schema.anything())),
}, required=("format", "format_version", "arch"), other=schema.anything())
_TAMPERED = "the metadata was altered or written by another tool: re-export the model (or `rdist teacher import` it)"


def save_model(model: nn.Module, path: str | Path, **meta: Any) -> Path:
    """Write `model` (built by `create_model`) and its metadata atomically to `path`.

    Keyword arguments become metadata: `dataset`, `input_shape`, `provenance`, `results`, ... .
    """
    arch = meta.pop("arch", None) or getattr(model, "rdist_arch", None)
    if arch is None:
        raise RdistError("save_model needs a model made by rdist.create_model (or pass arch={...})")
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch, **meta}
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={_KEY: json.dumps(metadata)})
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The artifact's metadata, validated; raises RdistError naming what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise RdistError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise RdistError(f"{path} is not a readable safetensors file ({exc}); is it truncated or another format? "
                         "convert PyTorch checkpoints with `rdist teacher import`") from None
    if raw is None:
        raise RdistError(f"{path} is a safetensors file without rdist metadata; convert it with `rdist teacher import`")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise RdistError(f"{path}: the rdist metadata is not valid JSON; the file is corrupted") from None
    return validate_metadata(meta, path)


def validate_metadata(meta: Any, source: str | Path) -> dict[str, Any]:
    """`meta` checked against METADATA_SCHEMA and the architecture registry; RdistError naming the field."""
    from rdist.models import known_architecture, list_models

    if not isinstance(meta, dict):
        raise RdistError(f"{source}: the metadata is not a mapping (found {type(meta).__name__}); {_TAMPERED}")
    if meta.get("format") != FORMAT:
        raise RdistError(f"{source}: metadata format is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise RdistError(f"{source}: metadata format version {meta.get('format_version')} is not supported by this "
                         f"rdist (it reads version {FORMAT_VERSION}); upgrade rdist or re-export the model")
    schema.validate(meta, METADATA_SCHEMA, f"{source}: metadata", _TAMPERED)
    arch = meta["arch"]
    if not known_architecture(arch["name"]):
        problem = unknown("architecture", arch["name"], list_models())
        raise RdistError(f"{source}: metadata field 'arch.name': {problem}; {_TAMPERED}")
    for key in ("mean", "std"):
        if arch.get(key) is not None and len(arch[key]) != arch["in_channels"]:
            raise RdistError(f"{source}: metadata field 'arch.{key}' has {len(arch[key])} values but "
                             f"'arch.in_channels' is {arch['in_channels']}; {_TAMPERED}")
    if (arch.get("mean") is None) != (arch.get("std") is None):
        raise RdistError(f"{source}: metadata fields 'arch.mean' and 'arch.std' must both be given or both null; "
                         f"{_TAMPERED}")
    shape = meta.get("input_shape")
    if shape is not None and shape[0] != arch["in_channels"]:
        raise RdistError(f"{source}: metadata field 'input_shape' {shape} has {shape[0]} channels but "
                         f"'arch.in_channels' is {arch['in_channels']}; {_TAMPERED}")
    return meta


def check_fits(meta: dict[str, Any], dataset: Any, what: str, *, instead: str = "a model",
               data_option: bool = True) -> None:
    """Refuse a model built for another class count or input shape than `dataset` (a loaded `rdist.data.Dataset`,
    or a dataset name, whose facts are then read without loading it): the one check of every command that
    puts a model on data.

    The message names the model (`what`: "teacher t.safetensors", "--surrogate s.safetensors"), the mismatch and
    the fix: `instead` trained on `dataset` ("a teacher"), or, with `data_option`, the model's own --data.
    """
    from rdist.data import dataset_shape

    if isinstance(dataset, str):
        channels, classes, size = dataset_shape(dataset)
        name, shape = dataset, (channels, size, size)
    else:
        name, classes, shape = dataset.name, dataset.num_classes, tuple(dataset.input_shape)
    arch = meta.get("arch") or {}
    trained_on = meta.get("dataset")
    fixes = [f"{instead} trained on {name}"]
    if data_option and trained_on != name:
        fixes.insert(0, f"--data {trained_on}" if trained_on else "the --data it was trained on")
    fix = f"pass {' or '.join(fixes)}"
    own_classes = arch.get("num_classes")
    if own_classes is not None and own_classes != classes:
        raise RdistError(f"{what} has {own_classes} classes but dataset {name} has {classes}; {fix}")
    own_shape = meta.get("input_shape") or ([arch["in_channels"], *shape[1:]] if arch.get("in_channels") else None)
    if own_shape is not None and tuple(own_shape) != shape:
        raise RdistError(f"{what} takes inputs of shape {tuple(own_shape)} but dataset {name} has {shape}; {fix}")


def load_artifact(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model an artifact describes, load its weights, and return it in eval mode.

    The metadata stays available as `model.rdist_meta`.
    """
    from rdist.models import create_model

    meta = read_metadata(path)
    model = create_model(**meta["arch"])
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise RdistError(f"{path}: cannot read the weights ({exc}); the file is truncated or corrupted") from None
    load_weights(model, state, source=str(path))
    model.rdist_meta = meta
    return model.to(device).eval()


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """`load_state_dict(strict=True)` with an error that names the keys that do not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                  if k in state and state[k].shape != v.shape]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if keys:
                parts.append(f"{label} {len(keys)}: {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}")
        arch = getattr(model, "rdist_arch", {}).get("name", type(model).__name__)
        raise RdistError(f"weights in {source} do not fit architecture {arch} ({'; '.join(parts)})")
    model.load_state_dict(state)


def update_metadata(path: str | Path, **changes: Any) -> dict[str, Any]:
    """Merge `changes` into the metadata (dicts merged one level deep) and rewrite the file atomically."""
    meta = read_metadata(path)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(meta.get(key), dict):
            meta[key] = {**meta[key], **value}
        else:
            meta[key] = value
    state = load_file(str(path))
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={_KEY: json.dumps(meta)})
    return meta


def with_metadata(path: str | Path, meta: dict[str, Any]) -> bytes:
    """The artifact `path` with metadata `meta` instead of its own, as the bytes of a safetensors file: the same
    tensors, byte for byte, under a new header (what `rdist zoo push` uploads)."""
    validate_metadata(meta, path)
    return save(load_file(str(path)), metadata={_KEY: json.dumps(meta)})


def results_key(attacks: list[str], dataset: str, eps: float, n: int, norm: str = "Linf") -> str:
    """The key under which a robustness report is stored: the same attacks, data, eps, n and norm mean the same
    numbers (an L-inf key has no norm part)."""
    return f"{'+'.join(attacks)}|{dataset}|{eps:.6f}|n={n}" + ("" if norm == "Linf" else f"|{norm}")


def report_key(report: dict[str, Any]) -> str:
    """`results_key` of a report as `rdist attack` writes it."""
    return results_key(report["attacks"], report["dataset"], report["eps"], report["n"], report.get("norm", "Linf"))


def record_results(path: str | Path, report: dict[str, Any]) -> dict[str, Any]:
    """Store a robustness report (from `rdist attack`) in the artifact's metadata, atomically."""
    return update_metadata(path, results={report_key(report): report})
