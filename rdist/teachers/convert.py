"""Convert a foreign PyTorch checkpoint into an rdist artifact without ever unpickling code."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from rdist.artifact import load_weights, read_metadata, save_model
from rdist.data import dataset_shape
from rdist.errors import RdistError
from rdist.models import create_model
from rdist.files import check_output
from rdist.utils import first_line

# Prefixes that wrappers add to every key: DataParallel/DDP ("module."), torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def read_state_dict(path: str | Path, *, containers: tuple[str, ...] = ("state_dict", "model_state_dict", "model"),
                    prefixes: tuple[str, ...] = _WRAPPER_PREFIXES,
                    fix: str = "re-save it as a state dict with torch.save(model.state_dict(), path)",
                    ) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, read weights-only: a plain state dict, or the one found by unwrapping, in
    order, each of `containers` the checkpoint has (("last", "state_dict") reads ckpt["last"]["state_dict"] or
    ckpt["last"]), with `prefixes` stripped from the keys. `fix` ends the error messages."""
    path = Path(path)
    if not path.is_file():
        raise RdistError(f"checkpoint not found: {path}")
    safetensors = path.suffix == ".safetensors"
    try:
        obj = load_file(str(path)) if safetensors else torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # junk input raises anything from UnpicklingError to KeyError or SafetensorError
        kind = "readable safetensors file" if safetensors else "weights-only PyTorch checkpoint"
        raise RdistError(f"{path} is not a {kind} ({type(exc).__name__}: {first_line(exc)}); rdist never "
                         f"unpickles code: {fix}") from None
    for key in containers:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RdistError(f"{path} does not hold a state dict of tensors (found {type(obj).__name__}); {fix}")
    state = {}
    for key, value in obj.items():
        for prefix in prefixes:
            key = key.removeprefix(prefix)
        state[key] = value
    return state


def import_checkpoint(checkpoint: str | Path, *, arch: str, dataset: str, output: str | Path,
                      num_classes: int | None = None, in_channels: int | None = None,
                      mean: list[float] | None = None, std: list[float] | None = None,
                      provenance: dict | None = None) -> dict:
    """Write `output` holding the checkpoint's weights in architecture `arch`; returns the metadata."""
    output = check_output(output, "--output", inputs=[("the checkpoint", checkpoint)])
    channels, classes, size = dataset_shape(dataset)
    # `or` would read an explicit 0 as "not given"; create_model refuses it instead.
    num_classes = classes if num_classes is None else num_classes
    in_channels = channels if in_channels is None else in_channels
    model = create_model(arch, num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)
    state = read_state_dict(checkpoint)
    if arch.startswith("wrn-"):
        from rdist.models.wide_resnet import drop_unused_keys
        state = drop_unused_keys(state)
    target = model.model if (mean is not None or std is not None) else model
    load_weights(target, state, source=str(checkpoint))
    save_model(model, output, dataset=dataset, input_shape=[in_channels, size, size],
               provenance={"imported_from": Path(checkpoint).name, **(provenance or {})}, results={})
    return read_metadata(output)
