"""Models for the edge: any model rdist loads, written as one ONNX file (fp32, or int8 quantised statically) and
checked against PyTorch. Reading ONNX files back, as models rdist evaluates, is `rdist.onnx`."""

from rdist.export.writer import export_model

__all__ = ["export_model"]
