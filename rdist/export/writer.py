"""`rdist export`: any model rdist loads, as one self-contained ONNX file (fp32, or int8 quantised statically),
checked against PyTorch before it is written.

The exporter is torch.onnx's torch.export-based one (`dynamo=True`, the default since PyTorch 2.9, built on
onnxscript): the TorchScript exporter warns on every call that it is deprecated and will be removed. The
dynamo exporter writes opset 18 and up; asked for less, it silently writes 18 (after a version conversion
that fails on our graphs), so a lower --opset is refused instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from rdist.artifact import check_fits, load_artifact
from rdist.data import load_dataset
from rdist.errors import RdistError
from rdist.files import atomic_path, check_output, sha256_file
from rdist.onnx import META_KEY, ONNX_FORMAT, ONNX_FORMAT_VERSION, ONNX_SUFFIX, create_session, is_onnx_path
from rdist.resolve import resolve_model
from rdist.utils import first_line

MIN_OPSET = 18  # the lowest opset torch.onnx's dynamo exporter implements
DEFAULT_OPSET = 18  # the lowest it writes: the widest choice of runtimes on small devices
DEFAULT_CALIBRATION = 512
MIN_CALIBRATION = 32  # fewer images give activation ranges set by a handful of outliers
FP32_TOLERANCE = 1e-3  # max |ONNX - PyTorch| logit difference, relative to the largest |PyTorch| logit
CHECK_IMAGES = 1000
RANDOM_CHECK_IMAGES = 16  # at most this many uniform-pixel parity images when the model records no dataset
_BATCH = 256
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"

Note = Callable[[str], None]


def max_opset() -> int:
    import onnx.defs

    return onnx.defs.onnx_opset_version()


def check_onnx_output(out: str | Path, source: Path) -> Path:
    """Refuse an output path that is not .onnx, or that `utils.check_output` refuses (unwritable, the input)."""
    out = Path(out).expanduser()
    if not is_onnx_path(out):
        raise RdistError(f"-o {out}: the output must end in {ONNX_SUFFIX}, which `rdist attack` and `rdist compare` "
                         "recognise")
    return check_output(out, "-o", inputs=[("the model being exported", source)])


def check_opset(opset: int) -> None:
    highest = max_opset()
    if not MIN_OPSET <= opset <= highest:
        raise RdistError(f"--opset {opset}: the installed exporter (torch {torch.__version__}, onnx "
                         f"{version('onnx')}) writes opsets {MIN_OPSET} to {highest}")


def to_onnx(model: nn.Module, input_shape: list[int], opset: int) -> Any:
    """The ModelProto of `model` on [0,1] pixels of `input_shape`, with a dynamic batch dimension."""
    example = torch.rand(2, *input_shape)  # batch 2: torch.export specialises a dimension of size 1
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), torch.no_grad():
            program = torch.onnx.export(model, (example,), None, dynamo=True, opset_version=opset, verbose=False,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as exc:  # torch.export and the ONNX translation raise many types; all mean the same here
        arch = getattr(model, "rdist_arch", {}).get("name", type(model).__name__)
        raise RdistError(f"torch.onnx cannot export {arch} ({type(exc).__name__}: {first_line(exc)})") from None
    proto = program.model_proto
    written = {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")}
    if written != {opset}:
        raise RdistError(f"--opset {opset}: the exporter wrote opset {sorted(written)}; choose an opset from "
                         f"{MIN_OPSET} to {max_opset()}")
    return proto


def quantize_int8(fp32: bytes, images: torch.Tensor, work: Path) -> bytes:
    """Static int8 quantisation with ONNX Runtime: QDQ format, int8 weights per output channel, uint8
    activations whose ranges are the min/max seen on `images` (float pixels in [0, 1])."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(images[i:i + _BATCH].numpy() for i in range(0, len(images), _BATCH))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    source, prepared, quantized = work / "fp32.onnx", work / "prepared.onnx", work / "int8.onnx"
    source.write_bytes(fp32)
    # ONNX Runtime's recommended pre-pass: symbolic shape inference (the batch is dynamic) and graph fusions.
    quant_pre_process(str(source), str(prepared))
    quantize_static(str(prepared), str(quantized), Calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return quantized.read_bytes()


def self_check(model: nn.Module, graph: bytes, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
    """Logits of PyTorch and ONNX Runtime on the same images: the largest difference, and both accuracies."""
    session = create_session(graph)
    theirs, ours = [], []
    with torch.no_grad():
        for i in range(0, len(x), _BATCH):
            batch = x[i:i + _BATCH]
            theirs.append(model(batch))
            ours.append(torch.from_numpy(session.run(None, {INPUT_NAME: batch.numpy()})[0]))
    reference, exported = torch.cat(theirs).double(), torch.cat(ours).double()
    max_abs = (exported - reference).abs().max().item()
    check = {"n": len(x), "max_abs_diff": max_abs,
             "relative_diff": max_abs / max(reference.abs().max().item(), 1e-12)}
    if y is not None:
        check["accuracy"] = {"onnx": (exported.argmax(1) == y).double().mean().item(),
                             "pytorch": (reference.argmax(1) == y).double().mean().item()}
    return check


def _calibration_images(dataset, count: int) -> torch.Tensor:
    available = len(dataset.x_train)
    if count < MIN_CALIBRATION:
        raise RdistError(f"--calibration {count}: int8 ranges from fewer than {MIN_CALIBRATION} images are set by a "
                         f"few outliers; give {MIN_CALIBRATION} to {available} (default {DEFAULT_CALIBRATION})")
    if count > available:
        raise RdistError(f"--calibration {count}: {dataset.name} has only {available} training images; "
                         f"give at most {available}")
    # A seeded sample, not the first images: a dataset stored class by class would calibrate on one class.
    order = torch.randperm(available, generator=torch.Generator().manual_seed(0))[:count]
    return dataset.x_train[order].float() / 255


def export_model(model: str, out: str | Path, *, int8: bool = False, calibration: int = DEFAULT_CALIBRATION,
                 opset: int = DEFAULT_OPSET, data: str | None = None, data_dir: str | None = None,
                 check_n: int = CHECK_IMAGES, note: Note | None = None) -> dict[str, Any]:
    """Export `model` (an artifact, zoo:NAME or a RobustBench teacher name) to the ONNX file `out`.

    The graph takes [0,1] pixels (the model's normalisation is inside it) with any batch size and carries the
    rdist metadata. Before anything is written, ONNX Runtime and PyTorch logits are compared on the first
    `check_n` test images of `data` (read from the folder `data_dir`, see `rdist.data.data_root`; uniform pixels
    when no dataset is known): fp32 is refused above a relative
    difference of 1e-3; both accuracies are reported. Returns what was written and measured.
    """
    note = note or (lambda text: None)
    check_opset(opset)
    if check_n <= 0:
        raise RdistError(f"--check-n must be a positive number of test images, got {check_n}")
    source = resolve_model(model, data).path
    out = check_onnx_output(out, source)
    net = load_artifact(source, "cpu")
    meta = net.rdist_meta
    data = data or meta.get("dataset")
    if int8 and not data:
        raise RdistError(f"{source} records no dataset to calibrate int8 on: pass --data")
    dataset = load_dataset(data, root=data_dir) if data else None
    if dataset is not None:
        check_fits(meta, dataset, str(source))
    input_shape = list(meta.get("input_shape") or (dataset.input_shape if dataset else []))
    if len(input_shape) != 3:
        raise RdistError(f"{source} records no input shape and no dataset: pass --data")
    calibration_images = _calibration_images(dataset, calibration) if int8 else None

    note(f"exporting {meta['arch']['name']} with torch.onnx (opset {opset})")
    graph = to_onnx(net, input_shape, opset).SerializeToString()
    if int8:
        note(f"quantising to int8, calibrated on {calibration} {dataset.name} training images")
        with tempfile.TemporaryDirectory(prefix="rdist-int8-") as work:
            graph = quantize_int8(graph, calibration_images, Path(work))

    if dataset is not None:
        x, y = dataset.x_test[:check_n].float() / 255, dataset.y_test[:check_n]
    else:
        count = min(check_n, RANDOM_CHECK_IMAGES)
        x, y = torch.rand(count, *input_shape, generator=torch.Generator().manual_seed(0)), None
    note(f"checking ONNX Runtime against PyTorch on {len(x)} {'test' if y is not None else 'random'} images")
    check = self_check(net, graph, x, y)
    precision = "int8" if int8 else "fp32"
    if not int8 and check["relative_diff"] > FP32_TOLERANCE:
        raise RdistError(f"ONNX Runtime and PyTorch logits differ by up to {check['max_abs_diff']:.3g} "
                         f"({check['relative_diff']:.2g} of the largest logit, above {FP32_TOLERANCE:g}); the export "
                         f"of {meta['arch']['name']} is wrong, nothing was written")

    import onnx

    proto = onnx.load_from_string(graph)
    onnx_meta = _metadata(meta, model, source, precision, opset, calibration if int8 else None, check, dataset)
    onnx.helper.set_model_props(proto, {META_KEY: json.dumps(onnx_meta)})
    proto.producer_name, proto.producer_version = "rdist", version("rdist")
    with atomic_path(out) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return {"path": str(out), "bytes": out.stat().st_size, "source": str(source), "precision": precision,
            "opset": opset, "calibration": calibration if int8 else None, "dataset": dataset.name if dataset else None,
            "source_bytes": source.stat().st_size, "check": check}


def _metadata(meta: dict, spec: str, source: Path, precision: str, opset: int, calibration: int | None,
              check: dict, dataset) -> dict[str, Any]:
    """The artifact's metadata plus the export's own record (settings, versions, the self-check).

    The source's recorded results were measured on the PyTorch model: they stay under `source`, so that
    nothing mistakes them for the exported model's.
    """
    # A file is named by its absolute path, so that the default --surrogate still resolves from elsewhere.
    named = spec if spec.startswith("zoo:") or not Path(spec).expanduser().exists() else str(source.resolve())
    return {
        "format": ONNX_FORMAT, "format_version": ONNX_FORMAT_VERSION,
        **{k: meta[k] for k in ("arch", "dataset", "input_shape", "provenance") if k in meta},
        "source": {"spec": named, "sha256": sha256_file(source), "results": meta.get("results", {})},
        "export": {"precision": precision, "opset": opset, "calibration_images": calibration,
                   **({"quantization": "static QDQ, per-channel int8 weights, uint8 activations, min/max"}
                      if calibration else {}),
                   "check": {**check, "dataset": dataset.name if dataset else None},
                   "exporter": f"torch.onnx dynamo (torch {torch.__version__})", "onnx": version("onnx"),
                   "onnxruntime": version("onnxruntime"), "rdist": version("rdist")},
    }
