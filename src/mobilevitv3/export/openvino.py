"""OpenVINO: the IR (`model.xml` with its weights in `model.bin` beside it) and `open_openvino`, its CPU adapter.

The IR is converted from the package's own ONNX export (`onnx.write_onnx`) by OpenVINO's ONNX frontend rather than
from the PyTorch module: the ONNX writer is the one checked route of the package (BatchNorm folding, a symbolic batch
and size, PSPNet's fallback exporter), and reading it costs about a second with no second trace whose dynamic-shape
handling would have to be kept in step. The weights are saved float32 (`compress_to_fp16=False`: OpenVINO's default
halves them). The model's metadata travels in the IR's rt_info under `mobilevitv3`, so the .xml is self-describing.

Precision: OpenVINO's CPU plugin runs the float ops in bf16 by default where the CPU has native bf16.
`open_openvino` asks for f32 for a float IR unless told otherwise, so an export is checked, evaluated and timed at
the precision it was written in. An INT8 IR keeps the plugin's default: the ops NNCF left float run in bf16 where the
CPU has it. NNCF's accuracy-controlled mode validated the file that way, and the bf16 rest is what makes INT8 pay:
measured on an AVX512-BF16 EPYC, 2 threads, 256x256, median of 5 alternating rounds, INT8 with f32 / with bf16 rest /
the float IR in bf16 took 5.82 / 5.70 / 6.18 ms for v3-XXS and 17.16 / 14.57 / 16.82 ms for v3-S.
"""
from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import torch

from .cpu import cpu_has_bf16
from .job import Job, Opened, package_version
from .layer_groups import GROUPS, check_groups
from .onnx import write_onnx

RT_INFO_KEY = "mobilevitv3"
PRECISIONS = {"f32": "f32", "bf16": "bf16"}   # OpenVINO's INFERENCE_PRECISION_HINT values


def write_openvino(job: Job, path: Path) -> None:
    import openvino as ov

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        source = Path(tmp) / "model.onnx"
        write_onnx(job, source)
        model = ov.convert_model(str(source))
    set_metadata(model, job.metadata)
    ov.save_model(model, str(path), compress_to_fp16=False)
    job.exporter = f"{job.exporter} -> {package_version('openvino')} convert_model (ONNX frontend)"


def set_metadata(model, metadata: dict[str, str]) -> None:
    """Store string entries in an openvino.Model's rt_info (saved into the .xml by `save_model`)."""
    for key, value in metadata.items():
        model.set_rt_info(str(value), [RT_INFO_KEY, key])


def read_metadata(model) -> dict[str, str]:
    """The entries `set_metadata` stored, {} for an IR without them."""
    if not model.has_rt_info([RT_INFO_KEY]):
        return {}
    section = model.get_rt_info([RT_INFO_KEY])
    entries = section.astype(dict) if hasattr(section, "astype") else dict(section)
    return {str(k): str(v.value if hasattr(v, "value") else v) for k, v in entries.items()}


def native_precision() -> str:
    """OpenVINO's fastest float precision on this CPU: bf16 where it computes bf16 natively, else f32."""
    return "bf16" if cpu_has_bf16() else "f32"


def open_openvino(path: str | Path, *, threads: int | None = None, precision: str | None = None) -> Opened:
    """An IR in OpenVINO's CPU plugin with `threads` inference threads (default: torch's count), one stream and the
    given inference `precision` for its float ops: f32, or bf16 where the CPU has it; by default f32 for a float IR
    and, for an INT8 IR, bf16 where the CPU has it (see the module docstring). The metadata is the IR's rt_info."""
    import openvino as ov
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"unknown OpenVINO precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    core = ov.Core()
    model = core.read_model(str(path))
    metadata = read_metadata(model)
    if precision is None:
        precision = native_precision() if metadata.get("precision") == "int8" else "f32"
    config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "NUM_STREAMS": 1,
              "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISIONS[precision]}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    outputs = list(compiled.outputs)

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        result = request.infer({0: x.numpy()})
        # the request's output buffers are reused by the next call: copy them out
        return [torch.from_numpy(result[o].copy()) for o in outputs]
    kind = f"int8, float ops {precision}" if metadata.get("precision") == "int8" else precision
    return Opened(run, f"{package_version('openvino')} (CPU, {kind})", metadata)


# ---- INT8 through NNCF ----------------------------------------------------------------------------------------------
# model_type=TRANSFORMER (its default preset: MIXED, symmetric int8 weights, asymmetric activations -- SiLU outputs and
# attention inputs are signed and lopsided): NNCF's transformer scheme keeps the softmax, normalisations and the
# attention's element-wise ops out of int8, measured faster than the default scheme on v3-XXS (4.33 vs 5.22 ms),
# v3-S (9.00 vs 10.45) and v3-1.0 (9.77 vs 10.95) on a VNNI CPU.

# Activation ranges: NNCF's own default for per-tensor activations is the mean over the calibration images of each
# image's min and max (RangeEstimatorParametersSet.MEAN_MINMAX): already an outlier-damping statistic, kept as the
# default. `--method` maps onto its presets: minmax -> MINMAX (global min/max), percentile -> MEAN_QUANTILE (the mean
# of each image's 1e-4 / 1 - 1e-4 quantiles). NNCF has no entropy calibration.
RANGE_ESTIMATORS = {None: "MEAN_MINMAX", "minmax": "MINMAX", "percentile": "MEAN_QUANTILE"}


def quantize_ir(source: Path, path: Path, images: torch.Tensor, metadata: dict[str, str], *,
                validation: list[tuple[torch.Tensor, int]] | None = None, max_drop: float | None = None,
                method: str | None = None, float_groups: tuple[str, ...]) -> str:
    """Quantize the float IR at `source` to an INT8 IR at `path` (calibrated on `images` [N, 3, H, W], one per call,
    activation ranges by `RANGE_ESTIMATORS[method]`, ops in `float_groups` left float); with `max_drop` (top-1
    points on `validation`), NNCF's accuracy-controlled mode returns layers to float, most harmful first, until the
    measured drop is within it. Returns a description of what was done."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet
    model = ov.Core().read_model(str(source))
    calibration = nncf.Dataset([x[None].numpy() for x in images])
    estimator = RANGE_ESTIMATORS[method]
    advanced = None if method is None else AdvancedQuantizationParameters(   # None: NNCF's defaults exactly
        activations_range_estimator_params=getattr(RangeEstimatorParametersSet, estimator))
    common = {"model_type": nncf.ModelType.TRANSFORMER, "preset": nncf.QuantizationPreset.MIXED,
              "subset_size": len(images)}
    if float_groups:   # NNCF matches a pattern from the start of an op's name (the ONNX node names, kept)
        patterns = [f".*(?:{GROUPS[g]})" for g in check_groups(float_groups)]
        common["ignored_scope"] = nncf.IgnoredScope(patterns=patterns, validate=False)
    # NNCF draws its progress bars on stdout, where the CLI prints its JSON report: they go to stderr
    with contextlib.redirect_stdout(sys.stderr):
        if max_drop is None:
            quantized = nncf.quantize(model, calibration, advanced_parameters=advanced, **common)
        else:
            samples = nncf.Dataset(validation, lambda item: item[0][None].numpy())
            quantized = nncf.quantize_with_accuracy_control(model, calibration, samples, _top1, max_drop=max_drop,
                                                            drop_type=nncf.DropType.ABSOLUTE,
                                                            advanced_quantization_parameters=advanced, **common)
    how = f"NNCF PTQ (transformer model type, mixed preset, {estimator} activation ranges)"
    if max_drop is not None:
        how = (f"NNCF accuracy-controlled PTQ (transformer model type, mixed preset, {estimator} activation "
               f"ranges), top-1 drop <= {max_drop} on {len(validation)} validation images")
    set_metadata(quantized, metadata | {"precision": "int8", "quantization": f"{package_version('nncf')} {how}, "
                                        f"{len(images)} calibration images"})
    ov.save_model(quantized, str(path), compress_to_fp16=False)
    return how


def _top1(compiled, samples) -> tuple[float, list[float]]:
    """NNCF's validation function: top-1 (percent) of a compiled model over (image [3, H, W], label) items, and each
    item's own score (100 or 0), which lets NNCF rank layers by the items they flip."""
    output = compiled.outputs[0]
    scores = [100.0 * float(compiled(image[None].numpy())[output].argmax(-1)[0] == label) for image, label in samples]
    return sum(scores) / max(len(scores), 1), scores
