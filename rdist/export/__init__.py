"""Models for the edge: ONNX export (fp32 and int8, `rdist.export.writer`) and ONNX files as models rdist
evaluates (`rdist.export.runtime`, which the model resolver reads `.onnx` files with).

The package imports only the runtime: the writer sits above the resolver (it exports any model name), the
runtime below it."""

from rdist.export.runtime import OnnxModel, is_onnx_path, load_onnx, read_onnx_metadata, runs_on_onnx

__all__ = ["OnnxModel", "is_onnx_path", "load_onnx", "read_onnx_metadata", "runs_on_onnx"]
