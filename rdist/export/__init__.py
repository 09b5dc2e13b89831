"""Models for the edge: ONNX export (fp32 and int8) and ONNX files as models the report layer evaluates."""

from rdist.export.runtime import OnnxModel, is_onnx_path, load_onnx, read_onnx_metadata, runs_on_onnx
from rdist.export.writer import export_model

__all__ = ["OnnxModel", "export_model", "is_onnx_path", "load_onnx", "read_onnx_metadata", "runs_on_onnx"]
