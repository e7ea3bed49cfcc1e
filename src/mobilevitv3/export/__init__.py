"""Deployment: `export(model, fmt, out)` for every runtime family (ONNX in `onnx`, TorchScript/ExportedProgram in
`torch_formats`, CoreML/ExecuTorch/TFLite in `edge`), each file checked in its own runtime before it is kept."""
from .api import FORMATS, ExportError, default_image_size, deploy_metadata, export, size_multiple

__all__ = ["FORMATS", "ExportError", "default_image_size", "deploy_metadata", "export", "size_multiple"]
