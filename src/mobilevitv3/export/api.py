"""Export any zoo model to the runtimes that phones and edge devices use, and prove the file computes the model.

Formats: ONNX (opset 17), TorchScript, torch.export ExportedProgram (.pt2), CoreML (.mlpackage, ML program),
ExecuTorch (.pte, XNNPACK), TFLite (LiteRT, through litert-torch) and OpenVINO (IR .xml + .bin). Each file is written
into a hidden temporary folder beside the output, loaded back with its own runtime, compared with the eager float32
model on random images, and only then renamed into place: a failed export leaves nothing behind. The tag's
preprocessing travels with the file (ONNX metadata_props, CoreML user metadata, an extra file in TorchScript / .pt2,
OpenVINO rt_info), because the released checkpoints expect [0, 1] pixels without mean/std and, for the v1 family, BGR
channel order -- mistakes no output check catches.
"""
from __future__ import annotations

import copy
import importlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..layers import MobileViTBlock
from ..layers import fuse as fold_batchnorm
from ..models import identity_record
from . import edge, onnx, openvino, torch_formats
from .job import Backend, Job, Opened, flatten

log = logging.getLogger(__name__)

MIN_SIZE, MAX_SIZE = 32, 4096        # one pixel at output stride 32; a sane upper bound for a deployed graph
MAX_BATCH = 1024
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2}   # max |export - eager| <= tol * max(1, max |eager|)


class ExportError(UserError):
    """A model that cannot be exported to a format, or an export that does not reproduce the model."""


@dataclass(frozen=True)
class Format:
    suffix: str
    requires: tuple[tuple[str, str], ...]  # (module to import, pip requirement known to work with torch 2.14.1)
    dynamic_size: bool = False             # symbolic height/width (torch.export-based exporters only)
    fp16: bool = True
    dynamic_batch: bool = True
    companions: tuple[str, ...] = ()       # suffixes of files written beside the main one (OpenVINO's .bin)
    tolerance: float | None = None         # float32 tolerance of the runtime, where it is not TOLERANCE's
    runtime: str | None = None             # the package that runs its files as a model in eval/predict (None: not)


FORMATS = {
    "onnx": Format(".onnx", (("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("onnxscript", "onnxscript")),
                   dynamic_size=True, runtime="onnxruntime"),
    "torchscript": Format(".pt", ()),
    "exported-program": Format(".pt2", (), dynamic_size=True),
    # CoreML, static batch: coremltools 9.0 fails on a symbolic batch (6-D unfold in the v1 family, GroupNorm in v2).
    "coreml": Format(".mlpackage", (("coremltools", "coremltools>=9.0"),), dynamic_batch=False),
    "executorch": Format(".pte", (("executorch", "executorch>=1.5.1"),), fp16=False, runtime="executorch"),
    "tflite": Format(".tflite", (("litert_torch", "litert-torch>=0.10.0"), ("ai_edge_litert", "ai-edge-litert")),
                     fp16=False, dynamic_batch=False),  # litert-torch 0.10 cannot lower symbolic reshapes
    # OpenVINO IR from the ONNX export; float32 only (its CPU plugin picks bf16 at run time, see export/openvino.py)
    # OpenVINO's CPU kernels in f32 are not PyTorch's: up to 7e-3 of the logit scale measured on digits-trained
    # v3-XXS models at 64x64 (0.021 at max |logit| 3.0, the same with EXECUTION_MODE_HINT ACCURACY; the ONNX file it
    # is converted from: 3e-6 in onnxruntime), so its check allows 1e-2.
    "openvino": Format(".xml", (("openvino", "openvino"), ("onnx", "onnx"), ("onnxscript", "onnxscript")),
                       dynamic_size=True, fp16=False, companions=(".bin",), tolerance=1e-2, runtime="openvino"),
}
BACKENDS = {   # per format: its writer and its one runtime adapter (every caller opens a file through these)
    "onnx": Backend(onnx.write_onnx, onnx.open_onnx),
    "torchscript": Backend(torch_formats.write_torchscript, torch_formats.open_torchscript),
    "exported-program": Backend(torch_formats.write_exported_program, torch_formats.open_exported_program),
    "coreml": Backend(edge.write_coreml, edge.open_coreml),
    "executorch": Backend(edge.write_executorch, edge.open_executorch),
    "tflite": Backend(edge.write_tflite, edge.open_tflite),
    "openvino": Backend(openvino.write_openvino, openvino.open_openvino),
}


def export(model: nn.Module, fmt: str, out: str | os.PathLike, *, image_size: int | tuple[int, int] | None = None,
           batch_size: int = 1, dynamic_batch: bool = False, dynamic_size: bool = False, fuse: bool = False,
           fp16: bool = False, verify: bool = True) -> dict:
    """Export `model` (any `create_model` result) as `fmt` to `out`; returns a JSON-able report.

    `image_size`: (height, width) or one int; default: the size the weights were evaluated at, else 256.
    `dynamic_batch`: any batch (checked at 1 and 3). `dynamic_size` (ONNX, ExportedProgram): any height/width that
    is a multiple of the model's `size_multiple` -- at those sizes no MobileViT block meets an odd map, so the graph
    needs no resize branch.
    The report holds the max abs difference from the eager float32 model on every checked input shape.
    """
    spec = _format(fmt)
    _require(fmt, spec)
    height, width = _image_size(image_size if image_size is not None else default_image_size(model))
    multiple = _check_options(model, fmt, spec, (height, width), batch_size, dynamic_batch, dynamic_size, fp16)
    path = _output_path(out, spec)
    dtype = torch.float16 if fp16 else torch.float32
    reference = copy.deepcopy(model).cpu().float().eval()
    deployed = fold_batchnorm(reference) if fuse else copy.deepcopy(reference)
    deployed = deployed.to(dtype).eval().requires_grad_(False)  # inference graphs; traced in-place ops stay valid
    expected = _eager(reference, _check_shapes(batch_size, height, width, dynamic_batch, multiple))
    # torch.export specialises a dimension whose example is 1 (a batch of 1, or one size step): trace with 2.
    example = torch.rand(max(2, batch_size) if dynamic_batch else batch_size, 3,
                         *(max(s, 2 * multiple) for s in (height, width)), generator=_rng()).to(dtype)
    job = Job(model=deployed, example=example, input_name="image", output_names=_output_names(model),
              dynamic_batch=dynamic_batch, size_multiple=multiple, max_batch=MAX_BATCH, max_size=MAX_SIZE,
              metadata=deploy_metadata(model, (height, width), multiple, dtype, dynamic_batch))
    with _staged(path, spec.companions) as tmp:
        runtime, run = _write_and_load(fmt, job, tmp)
        relative = spec.tolerance or TOLERANCE[dtype]
        check = _compare(run, expected, dtype, relative, verify) if run is not None else {"max_abs_diff": None}
    report = {"model": job.metadata["model"], "task": job.metadata["task"], "format": fmt, "path": str(path),
              "bytes": size_on_disk(path, spec.companions), "image_size": [height, width],
              "batch": "dynamic" if dynamic_batch else batch_size, "size_multiple": multiple or None,
              "dtype": job.metadata["input_dtype"], "fused": fuse, "exporter": job.exporter,
              "runtime": runtime, **check, "metadata": job.metadata}
    log.info("exported %s to %s (%s, max abs diff %s)", report["model"], path, runtime, report["max_abs_diff"])
    return report


def _check_options(model: nn.Module, fmt: str, spec: Format, size: tuple[int, int], batch_size: int,
                   dynamic_batch: bool, dynamic_size: bool, fp16: bool) -> int:
    """Options the format or the model cannot honour are user errors; returns the size step (0: static size)."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_BATCH:
        raise UserError(f"batch size must be an integer in 1..{MAX_BATCH}, got {batch_size!r}")
    if dynamic_size and not spec.dynamic_size:
        dyn = ", ".join(n for n, f in FORMATS.items() if f.dynamic_size)
        raise UserError(f"--dynamic-size is not supported for {fmt} (only {dyn}): export one file per image size")
    if dynamic_batch and not spec.dynamic_batch:
        raise UserError(f"--dynamic-batch is not supported for {fmt}: export with a fixed --batch-size")
    if fp16 and not spec.fp16:
        raise UserError(f"--fp16 is not supported for {fmt}: export float32")
    if not dynamic_size:
        return 0
    if getattr(getattr(model, "head_cfg", None), "kind", None) == "pspnet":
        raise UserError("PSPNet cannot be exported with --dynamic-size: its pyramid pooling bins depend on the map "
                        "size, which the exported pooling kernels fix; export one file per image size")
    multiple = size_multiple(model)
    if size[0] % multiple or size[1] % multiple:
        raise UserError(f"with --dynamic-size the image size must be a multiple of {multiple} for {_name(model)} "
                        f"(no odd feature map in any MobileViT block), got {size[0]}x{size[1]}")
    return multiple


def _write_and_load(fmt: str, job: Job, path: Path) -> tuple[str, Callable[[Tensor], list[Tensor]] | None]:
    backend = BACKENDS[fmt]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer/deprecation chatter from the exporters, not actionable
            backend.write(job, path)
            opened = backend.open(path)
            return opened.runtime, opened.run
    except (UserError, OSError):
        raise
    except Exception as e:  # exporter internals: one line for the CLI, the chain for --verbose
        raise ExportError(f"{fmt} export of {job.metadata['model']} failed: {_first_line(e)}") from e


def open_exported(path: str | os.PathLike, *, threads: int | None = None) -> Opened:
    """An exported file in its own runtime, the format told by its suffix (`threads`: the runtime's threads where it
    has a setting). Runtime and file errors propagate as they are: callers word them for their user."""
    path = Path(path)
    fmt = next((f for f, spec in FORMATS.items() if spec.suffix == path.suffix), None)
    if fmt is None:
        raise UserError(f"{path}: not an exported model (expected one of "
                        f"{', '.join(spec.suffix for spec in FORMATS.values())})")
    return BACKENDS[fmt].open(path, threads=threads)


def default_image_size(model: nn.Module) -> tuple[int, int]:
    """The size the model's weights were evaluated at (its training run's, or the tag's); 256 when unknown."""
    return model.identity.eval_size or (256, 256)


def size_multiple(model: nn.Module) -> int:
    """Smallest step of input sizes at which every MobileViT block sees an even map: 2x its largest reduction."""
    backbone = getattr(model, "backbone", model)
    reductions = [f["reduction"] for f in backbone.feature_info
                  if any(isinstance(m, MobileViTBlock) for m in backbone.get_submodule(f["module"]).modules())]
    return 2 * max(reductions, default=backbone.feature_info[-1]["reduction"])


def deploy_metadata(model: nn.Module, size: tuple[int, int], multiple: int, dtype: torch.dtype,
                    dynamic_batch: bool) -> dict[str, str]:
    """What a runtime needs beside the graph: input layout and size, the tag's preprocessing, the box coding.

    Preprocessing: pixels * `scale` (to [0, 1]), then (x - mean) / std per channel, in `channel_order`."""
    ident = model.identity
    meta = {"producer": f"mobilevitv3 {version('mobilevitv3')}", "model": ident.name, "task": ident.task,
            "input_name": "image", "input_layout": "NCHW", "input_dtype": str(dtype).removeprefix("torch."),
            "input_size": json.dumps(list(size)), "batch": "dynamic" if dynamic_batch else "static",
            "size_multiple": str(multiple) if multiple else "static",
            "output_names": json.dumps(_output_names(model))}
    pre = ident.preprocess
    meta |= {"num_classes": str(ident.num_classes), "channel_order": pre.channel_order,
             "scale": repr(1 / 255), "resize": json.dumps(pre.resize), "crop": json.dumps(pre.crop),
             "interpolation": pre.interpolation, "mean": json.dumps(list(pre.mean)), "std": json.dumps(list(pre.std)),
             "identity": json.dumps(identity_record(model))}
    if ident.dataset:
        meta["dataset"] = ident.dataset
    if ident.class_names:
        meta["class_names"] = json.dumps(list(ident.class_names))
    ssd = getattr(model, "head_cfg", None) if ident.task == "detection" else None   # SSDLite's SSDConfig
    if ssd is not None:
        meta |= {"box_coding": "ssd (cx, cy, w, h) priors from model.anchors(h, w); class 0 is background",
                 "center_variance": repr(ssd.center_variance), "size_variance": repr(ssd.size_variance)}
    return meta


def _name(model: nn.Module) -> str:
    return model.identity.name


def _output_names(model: nn.Module) -> list[str]:
    return ["class_logits", "box_regressions"] if model.identity.task == "detection" else ["logits"]


def _format(fmt: str) -> Format:
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return FORMATS[fmt]


def _require(fmt: str, spec: Format) -> None:
    for module, requirement in spec.requires:
        logger = logging.getLogger(module)  # coremltools logs version and platform notes on import
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            importlib.import_module(module)
        except ImportError as e:
            missing = getattr(e, "name", None) in (module, module.split(".")[0])
            why = "is not installed" if missing else f"cannot be imported ({_first_line(e)})"
            raise UserError(f"--format {fmt} needs the Python package {requirement.split('>')[0].split('=')[0]}, "
                            f"which {why}: pip install '{requirement}'") from None
        finally:
            logger.setLevel(level)


def _image_size(size) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in pair) \
            or not all(MIN_SIZE <= s <= MAX_SIZE for s in pair):
        raise UserError(f"image size must be (height, width) integers in {MIN_SIZE}..{MAX_SIZE}, got {size!r}")
    return pair


def _check_shapes(batch: int, h: int, w: int, dynamic_batch: bool, multiple: int) -> list[tuple[int, ...]]:
    """Input shapes the export is checked on: the example; batch 1 and 3 if dynamic; a second size if dynamic."""
    batches = [1, 3] if dynamic_batch else [batch]
    shapes = [(b, 3, h, w) for b in batches]
    if multiple:
        shapes.append((batches[-1], 3, h + multiple, w))
    return shapes


def _rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _eager(model: nn.Module, shapes: list[tuple[int, ...]]) -> list[tuple[Tensor, list]]:
    """Reference outputs of the float32 eager model; a size the model cannot take fails here, with a clear error."""
    pairs = []
    with torch.no_grad():
        for i, shape in enumerate(shapes):
            x = torch.rand(shape, generator=_rng(i + 1))
            try:
                pairs.append((x, flatten(model(x))))
            except RuntimeError as e:
                raise UserError(f"{_name(model)} cannot take a {shape[2]}x{shape[3]} image: "
                                f"{_first_line(e)}") from None
    return pairs


def _compare(run: Callable[[Tensor], list[Tensor]], expected: list[tuple[Tensor, list]], dtype: torch.dtype,
             relative: float, verify: bool) -> dict:
    diff, scale, checked, worst = 0.0, 1.0, [], None
    for x, ref in expected:
        try:
            got = run(x.to(dtype))
        except Exception as e:  # the runtime rejects its own file (e.g. a shape the exporter got wrong)
            raise ExportError(f"the exported file fails in its runtime on input {list(x.shape)}: "
                              f"{_first_line(e)}") from e
        if len(got) != len(ref) or any(g.shape != r.shape for g, r in zip(got, ref)):
            raise ExportError(f"exported outputs {[tuple(g.shape) for g in got]} for input {tuple(x.shape)} "
                              f"differ from the model's {[tuple(r.shape) for r in ref]}")
        d = max((g.float() - r).abs().max().item() for g, r in zip(got, ref))
        diff, worst = (d, list(x.shape)) if worst is None or not d <= diff else (diff, worst)  # NaN sticks
        scale = max([scale] + [r.abs().max().item() for r in ref])
        checked.append(list(x.shape))
    tol = relative * scale
    if verify and not diff <= tol:
        raise ExportError(f"the exported model differs from eager PyTorch by {diff:.3g} on input {worst} "
                          f"(tolerance {tol:.3g})")
    return {"max_abs_diff": diff, "tolerance": tol, "checked_inputs": checked}


def _output_path(out: str | os.PathLike, spec: Format) -> Path:
    path = Path(out)
    if spec.suffix == ".mlpackage" and path.suffix != ".mlpackage":
        raise UserError(f"a CoreML model is a folder whose name ends in .mlpackage, got {path}")
    if path.is_dir() and spec.suffix != ".mlpackage":
        raise UserError(f"output {path} is a folder; give a file name such as {path / ('model' + spec.suffix)}")
    blocker = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UserError(f"cannot write {path}: {blocker} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {path.parent}: {e.strerror or e}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise UserError(f"the output folder {path.parent} is not writable")
    return path


@contextmanager
def _staged(path: Path, companions: tuple[str, ...] = ()) -> Iterator[Path]:
    """`path`'s name inside a hidden temporary folder beside it: renamed onto `path` on success (same file system:
    atomic for a file), removed on any failure. The real name inside keeps archive-internal names right. Files with
    the `companions` suffixes (same stem) move first, so the main file never appears without them."""
    try:
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    except OSError as e:
        raise UserError(f"cannot write to {path.parent}: {e.strerror or e}") from None
    tmp = folder / path.name
    try:
        yield tmp
        for suffix in companions:
            os.replace(tmp.with_suffix(suffix), path.with_suffix(suffix))
        if tmp.is_dir() and path.exists():  # a folder (.mlpackage) cannot be renamed over another one
            os.replace(path, folder / f"{path.name}.old")
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def size_on_disk(path: Path, companions: tuple[str, ...] = ()) -> int:
    """Bytes of an exported model: a file with its companions, or a folder (.mlpackage)."""
    if companions:
        return sum(path.with_suffix(s).stat().st_size for s in (path.suffix, *companions))
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


__all__ = ["FORMATS", "ExportError", "default_image_size", "deploy_metadata", "export", "open_exported",
           "size_multiple"]
