"""Post-training static INT8 quantization: `quantize(model, fmt, out, calibration=images)`.

ONNX: the package's one ONNX export (BatchNorm folded), then onnxruntime.quantization's `quant_pre_process` and
`quantize_static` in QDQ form: weights int8 symmetric per output channel, activations uint8 asymmetric (onnxruntime's
x86 int8 kernels are u8s8; an s8 activation leaves most convs in float there), percentile calibration by default
(`calibration.py`: onnxruntime's rule with our own histogram, which falls back to min/max per degenerate tensor).
The layer groups of `layer_groups.default_float_groups` stay float: for onnxruntime the stem and the attention core (q/k
scaling, QK^T, softmax, AV; in v2 the separable attention between its two 1x1 projections): QLinearSoftmax is ~8x
slower than the float softmax, int8 matmuls with 16-wide heads are no faster, and the stem is the most sensitive layer.
ExecuTorch: PT2E with the XNNPACK quantizer (`pt2e.py`). OpenVINO: NNCF on the float IR (`openvino.quantize_ir`),
optionally in its accuracy-controlled mode (`max_drop`). Every choice is measured in docs/export.md.
Like `export`, the file is staged, run in its own runtime and compared with the float model (logit SNR) before it
is renamed into place; then timed against its runtime's float path (a warning where INT8 is the slower). Bad input
is a `UserError` raised before anything is written.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from .api import (
    FORMATS,
    ExportError,
    _first_line,
    _image_size,
    _output_path,
    _require,
    _staged,
    deploy_metadata,
    export,
    size_on_disk,
)
from .bf16 import measure
from .calibration import onnx_percentile_cache
from .edge import open_executorch
from .job import Run, flatten, package_version
from .layer_groups import check_groups, default_float_groups, pattern
from .onnx import open_onnx, set_metadata
from .openvino import native_precision, open_openvino, quantize_ir
from .pt2e import calibrated_int8, convert_qat, write_pte

log = logging.getLogger(__name__)

INT8_FORMATS = ("onnx", "executorch", "openvino")
NO_INT8 = {   # why the other formats get no INT8 file from this command
    "torchscript": "TorchScript has no portable INT8 graph (eager quantized ops run only in PyTorch)",
    "exported-program": "an ExportedProgram is float; its INT8 form is the ExecuTorch program (--format executorch)",
    "coreml": "coremltools' INT8 activation quantization needs its own calibration API (not wired here yet)",
    "tflite": "litert-torch's INT8 path needs its own quantizer (not wired here yet)",
}
METHODS = ("percentile", "minmax", "entropy")
# Activation calibration per toolchain: its methods, the first being the default (None: the toolchain's own).
# Percentile: the higher logit SNR in 5 of 6 measured model/toolchain pairs, top-1 / mIoU / mAP mixed (BENCHMARKS.md,
# "Calibration"); calibration.py makes it robust to degenerate tensors.
# NNCF's default (mean of per-image min/max) is already outlier-damped: openvino.RANGE_ESTIMATORS.
TOOLCHAIN_METHODS = {"onnx": METHODS, "executorch": ("percentile", "minmax"),
                     "openvino": (None, "percentile", "minmax")}
MIN_CALIBRATION = 8         # fewer images give ranges set by a handful of outliers (or none at all)
MIN_SNR_DB = 6.0            # below this the quantized file does not compute the model any more: an error
CHECK_IMAGES = 8            # calibration images the quantized file is compared on
# Normalisations have no int8 kernel in onnxruntime: quantizing them only adds Q/DQ of their scale and shift.
FLOAT_OPS = {"LayerNormalization", "InstanceNormalization", "BatchNormalization"}


@dataclass
class Written:
    """What a toolchain's writer gives back: the INT8 file opened in its runtime, and the float path it competes
    with (the runtime's fastest float form of the same graph) for the speed check."""
    run: Run
    exporter: str
    runtime: str
    float_run: Run | None
    float_path: str
    details: dict


def quantize(model: nn.Module, fmt: str, out: str | os.PathLike, *, calibration: Sequence[Tensor],
             image_size: int | tuple[int, int] | None = None, method: str | None = None, verify: bool = True,
             metadata: dict[str, str] | None = None, max_drop: float | None = None,
             validation: Sequence[tuple[Tensor, int]] | None = None, float_groups: Sequence[str] | None = None,
             compare_speed: bool = True) -> dict:
    """Quantize `model` (any `create_model` result) to an INT8 `fmt` file at `out`; returns a JSON-able report.

    `calibration`: preprocessed images [3, H, W] (the model's evaluation transform); at least `MIN_CALIBRATION`.
    `image_size`: the graph's input size (default: the calibration images' size; images of another size are resized
    for calibration). `method`: activation calibration, default the toolchain's first in `TOOLCHAIN_METHODS`
    (percentile for ONNX and ExecuTorch, see TOOLCHAIN_METHODS; a tensor whose range is degenerate falls back to
    min/max, counted in the report). The report gives the logit SNR (dB) of the
    INT8 file against the float model on the first calibration images. `metadata`: extra string entries for the
    file (the command stores the evaluation settings the calibration images were read with). `max_drop` (OpenVINO,
    classifiers): the largest top-1 drop (points) allowed on `validation` ((image [3, H, W], label) pairs read like
    the calibration images); NNCF keeps the layers that cost most in float until the drop is within it.
    `float_groups`: layer groups (layer_groups.GROUPS) kept float, default the measured choice for the toolchain
    and architecture (layer_groups.default_float_groups). `compare_speed`: time the file against the runtime's
    float path (a couple of seconds; the report's `speed`, and one warning line where INT8 is the slower)."""
    check_format(fmt)
    method = check_method(fmt, method)
    groups = tuple(default_float_groups(fmt, model.identity.arch) if float_groups is None else float_groups)
    try:
        check_groups(groups)
    except ValueError as e:
        raise UserError(str(e)) from None
    validation = _check_max_drop(model, fmt, max_drop, validation)
    images = _calibration_batch(calibration, image_size)
    size = tuple(images.shape[-2:])
    path = _output_path(out, FORMATS[fmt])
    reference = copy.deepcopy(model).cpu().float().eval()
    with torch.no_grad():
        expected = [flatten(reference(x[None])) for x in images[:CHECK_IMAGES]]
    writer = {"onnx": _onnx_int8, "executorch": _executorch_int8, "openvino": _openvino_int8}[fmt]
    options = {"max_drop": max_drop, "validation": validation} if fmt == "openvino" else {}
    with _staged(path, FORMATS[fmt].companions) as tmp, \
            tempfile.TemporaryDirectory(prefix=f".{path.name}.", suffix=".work", dir=path.parent) as work:
        try:
            written = writer(reference, tmp, images, method, dict(metadata or {}), work=Path(work), groups=groups,
                             compare_speed=compare_speed, **options)
        except (UserError, OSError):
            raise
        except Exception as e:  # quantizer / lowering internals: one line for the CLI, the chain for --verbose
            raise ExportError(f"INT8 {fmt} quantization of {model.identity.name} failed: {_first_line(e)}") from e
        snr = _snr(written.run, images[:CHECK_IMAGES], expected)
        if verify and not min(snr) >= MIN_SNR_DB:
            raise ExportError(f"the INT8 file reproduces the float model at only {min(snr):.1f} dB logit SNR "
                              f"(< {MIN_SNR_DB} dB): calibrate with images of the model's own data")
        speed = _compare_speed(written, images[:1]) if compare_speed and written.float_run is not None else None
    report = {"model": model.identity.name, "task": model.identity.task, "format": fmt, "path": str(path),
              "bytes": size_on_disk(path, FORMATS[fmt].companions), "image_size": list(size), "precision": "int8",
              "calibration_images": len(images), "calibration_method": method or "nncf-default",
              "float_groups": list(groups), "max_drop": max_drop, "exporter": written.exporter,
              "runtime": written.runtime, "logit_snr_db": [round(s, 2) for s in snr],
              "checked_images": len(expected), **written.details, "speed": speed}
    log.info("quantized %s to %s (%s, logit SNR %s dB)", report["model"], path, written.exporter,
             report["logit_snr_db"])
    return report


def check_method(fmt: str, method: str | None) -> str | None:
    """The calibration method for `fmt` (None: the toolchain's default), or a one-line UserError."""
    allowed = TOOLCHAIN_METHODS[fmt]
    if method is None:
        return allowed[0]
    if method not in METHODS:
        raise UserError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    if method not in allowed:
        raise UserError(f"--method {method} is onnxruntime's; {fmt} calibrates with "
                        f"{' or '.join(m for m in allowed if m)} (default: "
                        f"{allowed[0] or 'NNCF mean of per-image min/max'})")
    return method


def _compare_speed(written: Written, example: Tensor) -> dict:
    """Median ms per call of the INT8 file and of the float path, alternating (bf16.measure); a warning line where
    the INT8 file is the slower one here."""
    ms = measure({"int8": written.run, "float": written.float_run}, example)
    ratio = ms["int8"] / ms["float"]
    if ratio > 1.0:
        log.warning("INT8 is slower than %s on this machine: %.2f vs %.2f ms median per image (%s, %d threads); "
                    "the float file is the faster one here", written.float_path, ms["int8"], ms["float"],
                    "x".join(map(str, example.shape[-2:])), torch.get_num_threads())
    return {"int8_ms": round(ms["int8"], 3), "float_ms": round(ms["float"], 3), "float_path": written.float_path,
            "ratio": round(ratio, 3)}


def check_format(fmt: str, max_drop: float | None = None) -> None:
    """A format that can hold INT8 here (with accuracy control if `max_drop` is given), with its runtime packages
    installed; else a one-line UserError."""
    if max_drop is not None and (not isinstance(max_drop, (int, float)) or isinstance(max_drop, bool)
                                 or not 0 <= max_drop <= 100):
        raise UserError(f"--max-drop must be top-1 points in 0..100, got {max_drop!r}")
    if max_drop is not None and fmt != "openvino":
        raise UserError(f"--max-drop needs --format openvino (NNCF's accuracy-controlled mode), not {fmt}")
    if fmt in NO_INT8:
        raise UserError(f"--format {fmt} cannot hold an INT8 model here: {NO_INT8[fmt]}; use "
                        f"{' or '.join(INT8_FORMATS)}")
    if fmt not in INT8_FORMATS:
        raise UserError(f"unknown quantization format {fmt!r}; choose from {', '.join(INT8_FORMATS)}")
    _require(fmt, FORMATS[fmt])
    quantizer = {"executorch": "torchao", "openvino": "nncf"}.get(fmt)   # beside the runtime: its quantizer
    if quantizer is not None:
        try:
            __import__(quantizer)
        except ImportError:
            raise UserError(f"--format {fmt} needs the Python package {quantizer}, which is not installed: "
                            f"pip install '{quantizer}'") from None


def _check_max_drop(model: nn.Module, fmt: str, max_drop: float | None,
                    validation: Sequence[tuple[Tensor, int]] | None) -> list[tuple[Tensor, int]] | None:
    """Accuracy control needs OpenVINO, a classifier, a bound >= 0 and labelled images; else a one-line UserError."""
    if max_drop is None:
        return None
    check_format(fmt, max_drop)
    if model.identity.task != "classification":
        raise UserError(f"--max-drop is measured as top-1 here; {model.identity.task} models are quantized "
                        f"without it")
    items = list(validation or [])
    if len(items) < MIN_CALIBRATION:
        raise UserError(f"--max-drop needs labelled validation images (at least {MIN_CALIBRATION}), got {len(items)}")
    return [(torch.as_tensor(x).float(), int(y)) for x, y in items]


def _calibration_batch(calibration: Sequence[Tensor], image_size) -> Tensor:
    """One [N, 3, H, W] float tensor at the graph's input size."""
    images = [torch.as_tensor(x) for x in calibration]
    if len(images) < MIN_CALIBRATION:
        raise UserError(f"the calibration set has {len(images)} image(s); at least {MIN_CALIBRATION} are needed "
                        f"(a few hundred are typical): give more with --calib-images or another --calib")
    bad = next((x for x in images if x.ndim != 3 or x.shape[0] != 3 or not x.is_floating_point()), None)
    if bad is not None:
        raise UserError(f"calibration images must be float [3, H, W] tensors (the model's input), got "
                        f"{bad.dtype} {list(bad.shape)}")
    size = _image_size(image_size) if image_size is not None else tuple(images[0].shape[-2:])
    _image_size(size)
    return torch.stack([x if tuple(x.shape[-2:]) == size else
                        F.interpolate(x[None].float(), size, mode="bilinear", align_corners=False)[0]
                        for x in images]).float()


def _snr(run, images: Tensor, expected: list[list[Tensor]]) -> list[float]:
    """Signal-to-noise ratio (dB) of each output of the INT8 file against the float model, over `images`."""
    signal, noise = None, None
    for x, ref in zip(images, expected):
        try:
            got = run(x[None])
        except Exception as e:  # the runtime rejects its own file
            raise ExportError(f"the INT8 file fails in its runtime: {_first_line(e)}") from e
        if len(got) != len(ref) or any(tuple(g.shape) != tuple(r.shape) for g, r in zip(got, ref)):
            raise ExportError(f"INT8 outputs {[tuple(g.shape) for g in got]} differ in shape from the model's "
                              f"{[tuple(r.shape) for r in ref]}")
        s = [float(r.double().pow(2).sum()) for r in ref]
        n = [float((g.double() - r.double()).pow(2).sum()) for g, r in zip(got, ref)]
        signal = s if signal is None else [a + b for a, b in zip(signal, s)]
        noise = n if noise is None else [a + b for a, b in zip(noise, n)]
    return [10 * math.log10(s / n) if n > 0 else math.inf for s, n in zip(signal, noise)]


def quantize_qat(model: nn.Module, out: str | os.PathLike, *, check_images: Sequence[Tensor] | None = None,
                 metadata: dict[str, str] | None = None, verify: bool = True) -> dict:
    """The INT8 ExecuTorch file of a quantization-aware-trained `pt2e.QATModel`: its fake-quant ranges are the
    quantization (no calibration). Checked against the fake-quant graph itself on `check_images` (default: random
    images at its size)."""
    check_format("executorch")
    size = model.image_size
    images = torch.rand(CHECK_IMAGES, 3, *size, generator=torch.Generator().manual_seed(0)) \
        if check_images is None else _calibration_batch(check_images, size)[:CHECK_IMAGES]
    path = _output_path(out, FORMATS["executorch"])
    model.eval()
    with torch.no_grad():
        expected = [flatten(model(x[None])) for x in images]
    with _staged(path) as tmp:
        meta = deploy_metadata(model, size, 0, torch.float32, False) | dict(metadata or {})
        meta |= {"precision": "int8", "quantization": "PT2E XNNPACKQuantizer, quantization-aware trained"}
        try:
            exporter = write_pte(convert_qat(model.graph), images[:1], tmp, meta)
        except Exception as e:  # noqa: BLE001 -- lowering internals: one line
            raise ExportError(f"INT8 executorch conversion of the QAT model failed: {_first_line(e)}") from e
        opened = open_executorch(tmp)
        snr = _snr(opened.run, images, expected)
        if verify and not min(snr) >= MIN_SNR_DB:
            raise ExportError(f"the INT8 file reproduces the QAT model at only {min(snr):.1f} dB logit SNR")
    return {"model": model.identity.name, "task": model.identity.task, "format": "executorch", "path": str(path),
            "bytes": path.stat().st_size, "image_size": list(size), "precision": "int8", "calibration_images": 0,
            "calibration_method": "qat", "exporter": exporter, "runtime": opened.runtime,
            "logit_snr_db": [round(v, 2) for v in snr], "checked_images": len(images)}


# ---- ONNX ---------------------------------------------------------------------------------------------------------

def float_nodes(graph, groups: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes in the layer `groups` kept float; by default the stem (3-channel conv + SiLU: alone
    it costs 5 dB of logit SNR in int8, and onnxruntime's int8 conv is 2.5x slower than its fp32 one at 3 input
    channels) and each attention's core, between its input and output projections. The TorchScript exporter names
    nodes by module scope: `.../stem/...`, `.../attn/<op>`, the projections `.../attn/qkv_proj/...`."""
    match = pattern(groups)
    return [] if match is None else [n.name for n in graph.node if match.search(n.name)]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a tensor of images, one per run (the graph's batch)."""

    def __init__(self, images: Tensor, batch: int = 1) -> None:
        self._batches = [images[i:i + batch].numpy() for i in range(0, len(images), batch)]
        self._next = 0

    def get_next(self) -> dict | None:
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return {"image": self._batches[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0


def _onnx_int8(model: nn.Module, path: Path, images: Tensor, method: str, extra: dict[str, str], *, work: Path,
               groups: tuple[str, ...], compare_speed: bool) -> Written:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, pre, cache = work / "fp32.onnx", work / "pre.onnx", work / "ranges.json"
    # static batch 1: with a symbolic batch the 3-D linears stay MatMul + Add, which quantize as two ops and
    # run 1.2x slower than the Gemm (QGemm) onnxruntime fuses them into at a known shape
    meta = export(model, "onnx", fp32, image_size=tuple(images.shape[-2:]), fuse=True)["metadata"]
    quant_pre_process(str(fp32), str(pre))
    graph = onnx.load(str(pre)).graph
    excluded = float_nodes(graph, groups)
    softmax = [n.name for n in graph.node if n.op_type == "Softmax" and n.name not in excluded]
    if softmax and "attention" in groups:   # a graph named differently: keep at least the softmax float
        log.warning("attention nodes not found by name; keeping %d Softmax nodes float", len(softmax))
        excluded += softmax
    op_types = sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - FLOAT_OPS)
    details = {}
    if method == "percentile":   # our collector (calibration.py), handed to onnxruntime as its calibration cache
        fallbacks = onnx_percentile_cache(pre, iter(_Reader(images).get_next, None), op_types, cache)
        details["minmax_fallback_tensors"] = len(fallbacks)
    quantize_static(str(pre), str(path), None if method == "percentile" else _Reader(images),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, op_types_to_quantize=op_types, nodes_to_exclude=excluded,
                    calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                                      "entropy": CalibrationMethod.Entropy}[method],
                    calibration_cache_path=cache if method == "percentile" else None)
    proto = onnx.load(str(path))
    kept = ", ".join(groups) or "nothing"
    meta |= {"precision": "int8", "quantization": f"{package_version('onnxruntime')} quantize_static "
             f"QDQ u8s8 per-channel, {method}, {len(images)} calibration images, float: {kept}"} | extra
    set_metadata(proto, meta)
    onnx.save(proto, str(path))
    opened = open_onnx(path)
    float_run = open_onnx(fp32).run if compare_speed else None
    return Written(opened.run, "torch.onnx + onnxruntime.quantization (QDQ)", opened.runtime, float_run,
                   "onnxruntime fp32", details)


# ---- OpenVINO -----------------------------------------------------------------------------------------------------

def _openvino_int8(model: nn.Module, path: Path, images: Tensor, method: str | None, extra: dict[str, str], *,
                   work: Path, groups: tuple[str, ...], compare_speed: bool, max_drop: float | None,
                   validation: list[tuple[Tensor, int]] | None) -> Written:
    size = tuple(images.shape[-2:])
    if validation is not None:   # validation images at the graph's size, like the calibration ones
        validation = [(x if tuple(x.shape[-2:]) == size else
                       F.interpolate(x[None], size, mode="bilinear", align_corners=False)[0], y)
                      for x, y in validation]
    source = work / "fp32.xml"
    meta = export(model, "openvino", source, image_size=size, fuse=True)["metadata"]
    how = quantize_ir(source, path, images, meta | extra, validation=validation, max_drop=max_drop, method=method,
                      float_groups=groups)
    opened = open_openvino(path)
    # the float path to beat is OpenVINO's fastest float precision here: bf16 where the CPU computes it natively
    precision = native_precision()
    float_run = open_openvino(source, precision=precision).run if compare_speed else None
    return Written(opened.run, f"torch.onnx + openvino + {how}", opened.runtime, float_run,
                   f"OpenVINO {precision.replace('f32', 'fp32')}", {})


# ---- ExecuTorch ---------------------------------------------------------------------------------------------------

def _executorch_int8(model: nn.Module, path: Path, images: Tensor, method: str, extra: dict[str, str], *,
                     work: Path, groups: tuple[str, ...], compare_speed: bool) -> Written:
    example = images[:1]
    graph = calibrated_int8(model, (x[None] for x in images), example, method=method, float_groups=groups)
    meta = deploy_metadata(model, tuple(images.shape[-2:]), 0, torch.float32, False)
    meta |= {"precision": "int8", "quantization": f"PT2E XNNPACKQuantizer symmetric per-channel, {method}, "
             f"{len(images)} calibration images, float: {', '.join(groups) or 'nothing'}"} | extra
    exporter = write_pte(graph, example, path, meta)
    opened = open_executorch(path)
    float_run = None
    if compare_speed:   # the float program of the same runtime (the export's own, checked against eager)
        export(model, "executorch", work / "fp32.pte", image_size=tuple(images.shape[-2:]))
        float_run = open_executorch(work / "fp32.pte").run
    return Written(opened.run, exporter, opened.runtime, float_run, "ExecuTorch fp32",
                   {"minmax_fallback_tensors": graph.meta.get("minmax_fallback_tensors", 0)})


__all__ = ["INT8_FORMATS", "METHODS", "TOOLCHAIN_METHODS", "MIN_CALIBRATION", "float_nodes", "check_format",
           "check_method", "quantize", "quantize_qat"]
