"""An exported or quantized file (`.onnx`, `.pte`, OpenVINO `.xml`) as a model, so `eval` and `predict` measure it
like PyTorch.

`load_runtime_model(path)` reads the metadata the file carries (our export and quantize write the model's identity
into it), runs the graph in its own runtime (onnxruntime CPU, ExecuTorch XNNPACK, OpenVINO CPU) and borrows
everything that is not the network from a weightless skeleton of the same architecture: class names, preprocessing
and, for detection, the priors, decoding and NMS. A static-batch file runs a batch image by image; a fixed-size file
refuses another size (one line naming the file's size) rather than resizing behind the metrics' back.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError, existing_file
from ..export import FORMATS, open_exported
from ..models import model_from_identity
from ..models.identity import Identified

log = logging.getLogger(__name__)
RUNTIME_PACKAGES = {spec.suffix: spec.runtime for spec in FORMATS.values() if spec.runtime}   # suffix: runtime
RUNTIME_SUFFIXES = tuple(RUNTIME_PACKAGES)


def is_runtime_file(source: str | Path) -> bool:
    return Path(source).suffix in RUNTIME_SUFFIXES


class RuntimeModel(Identified, nn.Module):
    """forward(x [B, 3, H, W]) -> the file's outputs as torch tensors (a tensor, or a tuple for detection)."""

    def __init__(self, path: Path, run: Callable[[Tensor], list[Tensor]], metadata: dict[str, str],
                 skeleton: nn.Module, runtime: str) -> None:
        super().__init__()
        self.path, self._run, self.metadata, self.runtime = path, run, metadata, runtime
        self.skeleton = skeleton                 # weightless: identity, anchors, postprocess, loss
        self.identity, self.num_classes = skeleton.identity, skeleton.num_classes
        self.input_size = tuple(json.loads(metadata.get("input_size", "null")) or ()) or None
        self.static_batch = metadata.get("batch", "static") != "dynamic"
        self.fixed_size = metadata.get("size_multiple", "static") == "static"

    def forward(self, x: Tensor, size: tuple[int, int] | None = None) -> Tensor | tuple[Tensor, ...]:
        if self.fixed_size and self.input_size and tuple(x.shape[-2:]) != self.input_size:
            raise UserError(f"{self.path.name} takes {self.input_size[0]}x{self.input_size[1]} images, got "
                            f"{x.shape[-2]}x{x.shape[-1]}: quantize/export it at the size you evaluate at")
        device, x = x.device, x.detach().cpu().float().contiguous()
        chunks = [x[i:i + 1] for i in range(len(x))] if self.static_batch else [x]
        outs = [torch.cat(parts).to(device) for parts in zip(*(self._run(c) for c in chunks))]
        if self.task == "detection":
            return tuple(outs)
        logits = outs[0]
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):  # segmentation at the label size
            align = getattr(getattr(self.skeleton, "head_cfg", None), "align_corners", False)
            logits = F.interpolate(logits, tuple(size), mode="bilinear", align_corners=align)
        return logits

    @property
    def backbone(self) -> nn.Module:
        """The weightless skeleton's backbone: its configuration (output stride) sets the dense eval protocol."""
        return self.skeleton.backbone

    # detection: the decoding lives in the model class, not in the graph
    def anchors(self, height: int, width: int) -> Tensor:
        return self.skeleton.anchors(height, width)

    def postprocess(self, *args, **kwargs):
        return self.skeleton.postprocess(*args, **kwargs)

    def loss(self, *args, **kwargs):
        return self.skeleton.loss(*args, **kwargs)


def load_runtime_model(path: str | Path, *, threads: int | None = None) -> RuntimeModel:
    """A `.onnx`, `.pte` or OpenVINO `.xml` file written by this package's export or quantize, as an eval-mode model."""
    path = existing_file(path)
    if path.suffix not in RUNTIME_SUFFIXES:
        raise UserError(f"{path}: not an exported model (expected {' or '.join(RUNTIME_SUFFIXES)})")
    module = RUNTIME_PACKAGES[path.suffix]
    try:
        opened = open_exported(path, threads=threads)
    except ImportError:
        raise UserError(f"running {path.name} needs the Python package {module}: pip install {module}") from None
    except Exception as e:  # noqa: BLE001 -- a corrupt or foreign file: one line
        raise UserError(f"cannot load {path}: {str(e).strip().splitlines()[0] if str(e).strip() else e!r}") from None
    meta, run, runtime = opened.metadata, opened.run, opened.runtime
    if "identity" not in meta:
        raise UserError(f"{path} carries no mobilevitv3 metadata (not written by this package's export or "
                        f"quantize), so its model and preprocessing are unknown")
    skeleton = model_from_identity(json.loads(meta["identity"])).eval()
    log.info("running %s in %s (%s, %s)", path, runtime, skeleton.name, meta.get("precision", "float32"))
    return RuntimeModel(path, run, meta, skeleton, runtime).eval()
