"""ONNX files as rdist models: an ONNX Runtime session behind a torch-callable forward, and the rdist metadata
that `rdist export` writes into the file's `metadata_props`.

ONNX Runtime gives logits and nothing else: no gradient reaches the input. So an ONNX model answers what needs
no gradient of it (clean accuracy, the query-only Square attack, and transfer attacks crafted on a PyTorch
surrogate) and every gradient attack is refused by name rather than run against a wall.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from rdist.errors import RdistError
from rdist.utils import first_line

ONNX_SUFFIX = ".onnx"
META_KEY = "rdist"  # the metadata_props key, as in the safetensors header
ONNX_FORMAT = "rdist-onnx"
ONNX_FORMAT_VERSION = 1
# Attacks that query the model for logits only.
QUERY_ONLY = ("clean", "square")
# Operators a quantiser leaves in the graph: their presence, not a metadata claim, says a file is int8.
_QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                  "MatMulInteger"}


def is_onnx_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ONNX_SUFFIX


def runs_on_onnx(attack: str) -> bool:
    """Whether `attack` needs no gradient of the attacked model (transfer attacks take theirs from a surrogate)."""
    return attack in QUERY_ONLY or attack.startswith("transfer-")


def _load_proto(path: Path):
    import onnx
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise RdistError(f"model file not found: {path}")
    try:
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise RdistError(f"{path} is not a readable ONNX file ({first_line(exc)}); is it truncated? write it again "
                         "with `rdist export`") from None


def _static_dims(value_info) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def _graph_metadata(proto, path: Path) -> dict[str, Any]:
    """What a file without rdist metadata still tells: its input shape and class count, from the graph."""
    inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    if len(inputs) != 1 or len(proto.graph.output) < 1:
        raise RdistError(f"{path} has {len(inputs)} inputs and {len(proto.graph.output)} outputs; rdist evaluates "
                         "image classifiers with one input (N, C, H, W) and logits (N, classes) as first output")
    shape, logits = _static_dims(inputs[0]), _static_dims(proto.graph.output[0])
    if len(shape) != 4 or None in shape[1:] or len(logits) != 2 or logits[1] is None:
        raise RdistError(f"{path}: input {shape} and output {logits} are not an image classifier's (N, C, H, W) -> "
                         "(N, classes) with fixed C, H, W and classes; rdist cannot evaluate it")
    return {"arch": {"name": "onnx", "num_classes": logits[1], "in_channels": shape[1]},
            "input_shape": shape[1:], "foreign": True}


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The rdist metadata of an ONNX file; a file rdist did not write gets what its graph says, with foreign=True."""
    path = Path(path)
    proto = _load_proto(path)
    raw = {p.key: p.value for p in proto.metadata_props}.get(META_KEY)
    if raw is None:
        return _graph_metadata(proto, path)
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise RdistError(f"{path}: the rdist metadata is not valid JSON; the file is corrupted") from None
    if meta.get("format") != ONNX_FORMAT or meta.get("format_version") != ONNX_FORMAT_VERSION:
        raise RdistError(f"{path}: metadata format {meta.get('format')!r} version {meta.get('format_version')} is "
                         f"not {ONNX_FORMAT!r} version {ONNX_FORMAT_VERSION}; export the model again with this rdist")
    return {**meta, "foreign": False}


def graph_precision(path: str | Path) -> str:
    """'int8' when the graph holds quantisation operators, else 'fp32'."""
    proto = _load_proto(Path(path))
    return "int8" if any(node.op_type in _QUANTIZED_OPS for node in proto.graph.node) else "fp32"


def create_session(model: str | Path | bytes, threads: int | None = None):
    """An ONNX Runtime CPU session on `threads` intra-op threads (default: as many as torch uses)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers are noise to a user
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind exception types (InvalidGraph, Fail, ...)
        source = "the exported graph" if isinstance(model, bytes) else str(model)
        raise RdistError(f"ONNX Runtime cannot load {source} ({first_line(exc)})") from None


class OnnxModel(nn.Module):
    """An ONNX Runtime session that takes and returns torch tensors, for the evaluator and the attacks.

    Inputs are [0, 1] pixels like every rdist model (the exported graph normalises inside itself). The
    session runs on the CPU; the logits go back to the inputs' device, so that a surrogate and the data may
    live on a GPU (`device` says where the evaluator should put the inputs).
    """

    def __init__(self, path: str | Path, meta: dict[str, Any], threads: int | None = None,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.path, self.rdist_meta = Path(path), meta
        # Where the inputs and the logits live (`rdist.device.model_device` reads it): the model holds no weights
        # that could say so.
        self.device = torch.device(device)
        self.session = create_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.precision = graph_precision(path)
        self.runtime = f"ONNX Runtime {self.precision}"

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            raise RdistError(f"{self.path} runs in ONNX Runtime, which gives no gradients: a gradient attack "
                             "cannot run on it")
        pixels = x.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            logits = self.session.run(None, {self.input_name: pixels})[0]
        except Exception as exc:  # onnxruntime's pybind exception types
            raise RdistError(f"ONNX Runtime refused a batch of shape {tuple(x.shape)} for {self.path} "
                             f"({first_line(exc)})") from None
        return torch.from_numpy(np.ascontiguousarray(logits)).to(x.device)


def load_onnx(path: str | Path, device: torch.device | str = "cpu", threads: int | None = None) -> OnnxModel:
    """The ONNX file at `path` as an OnnxModel taking inputs on `device`, its metadata as `.rdist_meta` (see
    read_onnx_metadata)."""
    return OnnxModel(path, read_onnx_metadata(path), threads, device).eval()


def onnx_target(path: Path, attacks: list[str], *, data: str | None, surrogate: str | None, record: bool,
                device: torch.device) -> tuple[OnnxModel, str | None]:
    """The ONNX model `rdist attack` evaluates, and the surrogate its transfer attacks are crafted on.

    Refuses attacks that need the model's gradients, naming the ones that run; the surrogate defaults to the
    artifact the file was exported from.
    """
    refused = [a for a in attacks if not runs_on_onnx(a)]
    if refused:
        raise RdistError(f"{', '.join(refused)} need{'s' if len(refused) == 1 else ''} gradients, which ONNX Runtime "
                         f"does not give: on {path.name} run clean, square, transfer-pgd20, transfer-cw "
                         "(e.g. --attacks clean,square,transfer-pgd20)")
    if record:
        raise RdistError(f"--record writes into .safetensors artifacts; {path.name} is not rewritten: keep the "
                         "report with --out FILE")
    model = load_onnx(path, device)
    meta = model.rdist_meta
    if meta["foreign"] and not data:
        raise RdistError(f"{path} has no rdist metadata (not written by `rdist export`): clean and square still "
                         "run on [0,1] pixels with --data naming its test set, transfer attacks with --surrogate")
    needs_surrogate = any(a.startswith("transfer-") for a in attacks)
    if needs_surrogate and not surrogate:
        surrogate = (meta.get("source") or {}).get("spec")
        if not surrogate:
            raise RdistError(f"{path} names no source artifact to craft transfer attacks on: pass --surrogate MODEL")
    return model, surrogate


def check_surrogate(spec: str) -> None:
    if is_onnx_path(spec):
        raise RdistError(f"--surrogate {spec}: transfer attacks are crafted with gradients, so the surrogate must be "
                         "a PyTorch artifact (.safetensors, zoo:NAME or a teacher name), not an ONNX file")


def latency_ms(path: str | Path, input_shape: Sequence[int], threads: int, warmup: int = 3,
               runs: int = 10) -> float:
    """Median milliseconds of one ONNX Runtime forward pass at batch size 1 on `threads` CPU threads."""
    session = create_session(path, threads)
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).random((1, *input_shape), dtype=np.float32)}
    times = []
    for i in range(warmup + runs):
        started = time.perf_counter()
        session.run(None, feed)
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def initializer_count(path: str | Path) -> int:
    """Elements in the graph's stored tensors: the parameter count of a file whose architecture is unknown."""
    proto = _load_proto(Path(path))
    return sum(int(np.prod(t.dims)) for t in proto.graph.initializer)


def all_threads() -> int:
    return os.cpu_count() or 1
