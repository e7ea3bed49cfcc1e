"""Deployment: `export(model, fmt, out)` for every runtime family (ONNX in `onnx`, TorchScript/ExportedProgram in
`torch_formats`, CoreML/ExecuTorch/TFLite in `edge`), each file checked in its own runtime before it is kept;
`open_exported(path)` opens any such file in its runtime through the same one adapter per runtime."""
from .api import FORMATS, ExportError, default_image_size, deploy_metadata, export, open_exported, size_multiple

__all__ = ["FORMATS", "ExportError", "default_image_size", "deploy_metadata", "export", "open_exported",
           "size_multiple"]
