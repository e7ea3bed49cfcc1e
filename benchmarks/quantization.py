"""INT8 against float32, measured (issue 11): accuracy on digits, logit SNR on fixture weights, CPU latency.

    python benchmarks/quantization.py [--runs XXS_RUN 050_RUN] [--rounds 5] [--iters 30] [--threads 2]
        [--models mobilevitv3_xxs mobilevitv3_050 mobilevitv3_s] [--no-executorch] [--no-accuracy] [--no-speed]
        [--dense SEG_CKPT DET_CKPT] [--out benchmarks/quantization]
    python benchmarks/quantization.py --groups ort ov et --models mobilevitv3_xxs mobilevitv3_050 mobilevitv3_s \
        mobilevitv3_100 --rounds 5 --iters 30 --threads 2 --out benchmarks/quantization_groups

- Accuracy: digits classifiers v3-XXS and v3-0.5 (trained here with the digits main job, 12 epochs, unless run
  folders are given), fp32 vs INT8 top-1 on the digits val split with the user's own commands (`quantize` with 256
  calibration images of `digits`, then `eval` on the file), in onnxruntime and in the ExecuTorch runtime.
- Dense: `--dense` checkpoints of a segmenter and a detector trained on the embedded digit scenes
  (`scripts/scenes.sh`), mIoU / COCO mAP on the scenes' val split, fp32 against INT8 (64 calibration scenes).
- SNR: each model with the deterministic fixture weights of tests/official.py (untrained, official layout), INT8 vs
  fp32 logits on 16 held-out random images, after calibrating on 32 other random images (256x256).
- Latency: those files, batch 1, 256x256, `--threads` threads, each file timed in its own process (median of
  `--iters` runs after 10 warm-up runs), the files of one model in alternating order over `--rounds` rounds; and
  the same at 1 thread as CPU time of the computing thread (`cpu_ms`), a proxy that other processes' load on a
  shared machine does not inflate.
- Layer groups (`--groups RUNTIME...`, issue 20): per model and runtime (ort: onnxruntime, ov: OpenVINO, et:
  ExecuTorch-XNNPACK), the float file(s) (OpenVINO: f32 and bf16), the INT8 file with the runtime's float groups
  (layer_groups.default_float_groups), with every group quantized, and with each layer group kept float in addition
  (`+group`) or quantized in addition (`-group`), all timed in alternating rounds (random fixture-free weights:
  latency only). The table is docs/export.md's "INT8 layer groups"; FLOAT_GROUPS is chosen from it.
Writes OUT.json and OUT.md; the load average is recorded before and after.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SIZE = 256


# ---- timing worker: `python quantization.py --time FILE --threads T --iters N` ----------------------------------
def time_file(path: str, threads: int, iters: int) -> dict:
    from mobilevitv3.export import open_exported
    from mobilevitv3.export.openvino import open_openvino
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32))
    path, _, precision = path.partition("#")        # FILE#bf16: an OpenVINO IR run in bf16
    # the package's one adapter of the file's runtime
    opened = open_openvino(path, threads=threads, precision=precision) if precision else \
        open_exported(path, threads=threads)
    run = lambda: opened.run(x)  # noqa: E731
    for _ in range(10):
        run()
    # threads == 1: CPU time of this (the only computing) thread, which another process's load does not inflate
    clock = time.thread_time if threads == 1 else time.perf_counter
    times = []
    for _ in range(iters):
        start = clock()
        run()
        times.append((clock() - start) * 1e3)
    return {"median_ms": float(np.median(times)), "p10_ms": float(np.percentile(times, 10))}


def timed_rounds(files: dict[str, str], threads: int, iters: int, rounds: int) -> dict[str, dict]:
    """Each file in a fresh process per round, the order reversed every other round."""
    got: dict[str, list[float]] = {k: [] for k in files}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for r in range(rounds):
        for key in (list(files) if r % 2 == 0 else list(files)[::-1]):
            out = subprocess.run([sys.executable, __file__, "--time", files[key], "--threads", str(threads),
                                  "--iters", str(iters)], capture_output=True, text=True, env=env, check=True)
            got[key].append(json.loads(out.stdout.strip().splitlines()[-1])["median_ms"])
    return {k: {"median_ms": float(np.median(v)), "rounds_ms": [round(t, 3) for t in v]} for k, v in got.items()}


# ---- files and SNR on fixture weights ---------------------------------------------------------------------------
def fixture_model(name: str, tmp: Path):
    sys.path.insert(0, str(HERE.parent / "tests"))
    from mobilevitv3 import create_model
    from official import load_fixture, official_state_dict
    path = tmp / f"{name}.official.pt"
    torch.save(official_state_dict(load_fixture(f"{name}.in1k")), path)
    return create_model(f"{name}.in1k", weights=str(path)).eval()


def outputs(path: Path, images: torch.Tensor) -> torch.Tensor:
    from mobilevitv3.infer.runtime import load_runtime_model
    model = load_runtime_model(path, threads=2)
    return torch.cat([model(x[None]) for x in images])


def snr_db(ref: torch.Tensor, got: torch.Tensor) -> float:
    return 10 * math.log10(float(ref.double().pow(2).sum()) / max(float((got.double() - ref.double()).pow(2).sum()),
                                                                    1e-30))


def build_files(name: str, tmp: Path, executorch: bool) -> tuple[dict[str, str], dict[str, float]]:
    from mobilevitv3.export import export
    from mobilevitv3.export.quantize import quantize
    model = fixture_model(name, tmp)
    g = torch.Generator().manual_seed(0)
    calib, held_out = torch.rand(32, 3, SIZE, SIZE, generator=g), torch.rand(16, 3, SIZE, SIZE, generator=g)
    files = {"ort_fp32": tmp / f"{name}.onnx", "ort_int8": tmp / f"{name}.int8.onnx"}
    export(model, "onnx", files["ort_fp32"], image_size=SIZE, fuse=True)
    quantize(model, "onnx", files["ort_int8"], calibration=list(calib), verify=False)
    if executorch:
        files |= {"et_fp32": tmp / f"{name}.pte", "et_int8": tmp / f"{name}.int8.pte"}
        export(model, "executorch", files["et_fp32"], image_size=SIZE)
        quantize(model, "executorch", files["et_int8"], calibration=list(calib), verify=False)
    with torch.no_grad():
        ref = model(held_out)
    snr = {k: round(snr_db(ref, outputs(p, held_out)), 2) for k, p in files.items()}
    return {k: str(p) for k, p in files.items()}, snr


# ---- layer groups kept float, per runtime ---------------------------------------------------------------------------
GROUP_FORMATS = {"ort": ("onnx", "onnx"), "ov": ("openvino", "xml"), "et": ("executorch", "pte")}


def group_files(name: str, runtime: str, tmp: Path, every_variant: bool = True) -> dict[str, str]:
    """The float file(s) and the INT8 variants of one model in one runtime (see the module docstring); without
    `every_variant`, the default INT8 file alone (the float paths against what `quantize` writes)."""
    from mobilevitv3 import create_model
    from mobilevitv3.export import export
    from mobilevitv3.export.layer_groups import GROUPS, default_float_groups
    from mobilevitv3.export.quantize import quantize
    fmt, suffix = GROUP_FORMATS[runtime]
    model = create_model(name).eval()
    calib = list(torch.rand(32, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)))
    files = {f"{runtime} fp32": tmp / f"{name}.{runtime}.fp32.{suffix}"}
    export(model, fmt, files[f"{runtime} fp32"], image_size=SIZE, fuse=True)
    default = default_float_groups(fmt, name)
    variants = {"int8": default}
    if every_variant:
        variants |= {"int8 all": ()} | {
            f"int8 {'-' if g in default else '+'}{g}": tuple(x for x in default if x != g) if g in default
            else (*default, g) for g in GROUPS}
    for label, groups in variants.items():
        path = tmp / f"{name}.{runtime}.{label.replace(' ', '_').replace('+', 'p').replace('-', 'm')}.{suffix}"
        quantize(model, fmt, path, calibration=calib, verify=False, float_groups=groups, compare_speed=False)
        files[f"{runtime} {label}"] = path
    named = {k: str(v) for k, v in files.items()}
    if runtime == "ov":
        named["ov bf16"] = f"{files['ov fp32']}#bf16"
    return named


def group_table(report: dict) -> list[str]:
    lines = ["", f"INT8 layer groups: {SIZE}x{SIZE}, batch 1, random weights, median ms over rounds (ratio to the "
             "runtime's best float path)", ""]
    for name, timings in report["groups"].items():
        lines += [f"{name}:", "", "| file | ms | vs best float |", "| --- | --- | --- |"]
        for runtime in GROUP_FORMATS:
            rows = {k: v["median_ms"] for k, v in timings.items() if k.startswith(runtime + " ")}
            floats = [v for k, v in rows.items() if "int8" not in k]
            for key, ms in rows.items():
                lines.append(f"| {key} | {ms:.2f} | {ms / min(floats):.2f}x |")
        lines.append("")
    return lines


# ---- accuracy on digits through the CLI ---------------------------------------------------------------------------
def cli_json(*args: str) -> dict:
    from contextlib import redirect_stdout
    from io import StringIO

    from mobilevitv3.cli import main
    buf = StringIO()
    with redirect_stdout(buf):
        rc = main(list(args))
    if rc != 0:
        raise SystemExit(f"mobilevitv3 {' '.join(args)} failed ({rc})")
    return json.loads(buf.getvalue())


def digits_accuracy(name: str, run: Path | None, tmp: Path, executorch: bool) -> dict:
    if run is None:
        run = tmp / f"run_{name}"
        cli_json("train", "--model", name, "--data", "digits", "--out", str(run), "--workers", "0")
    best = str(run / "best.pt")
    row = {"fp32": cli_json("eval", best, "--data", "digits", "--workers", "0")["top1"]}
    for fmt, key, suffix in (("onnx", "ort", "onnx"), ("executorch", "et", "pte")):
        if fmt == "executorch" and not executorch:
            continue
        out = tmp / f"{name}.digits.int8.{suffix}"
        report = cli_json("quantize", best, "--calib", "digits", "--calib-images", "256", "--format", fmt, "-o",
                          str(out))
        row[f"{key}_int8"] = cli_json("eval", str(out), "--data", "digits", "--workers", "0")["top1"]
        row[f"{key}_snr_db"] = report["logit_snr_db"][0]
    if executorch:
        from mobilevitv3.export import export
        from mobilevitv3.infer.run import load_model
        model, _ = load_model(best)
        export(model, "executorch", tmp / f"{name}.digits.pte", image_size=64)
        row["et_fp32"] = cli_json("eval", str(tmp / f"{name}.digits.pte"), "--data", "digits",
                                  "--workers", "0")["top1"]
    return row


def dense_accuracy(checkpoint: Path, tmp: Path, executorch: bool, calib_images: int) -> dict:
    """A segmenter's mIoU or a detector's COCO mAP on the embedded scenes' val split, fp32 (PyTorch) against the
    INT8 files, each through the user's commands (`eval CKPT --data scenes`, `quantize --calib scenes`)."""
    fp32 = cli_json("eval", str(checkpoint), "--data", "scenes", "--workers", "0")
    key = "miou" if "miou" in fp32 else "map"
    row = {"metric": key, "fp32": fp32[key]}
    for fmt, rt, suffix in (("onnx", "ort", "onnx"), ("executorch", "et", "pte")):
        if fmt == "executorch" and not executorch:
            continue
        out = tmp / f"{checkpoint.parent.name}.int8.{suffix}"
        report = cli_json("quantize", str(checkpoint), "--calib", "scenes", "--calib-images", str(calib_images),
                          "--format", fmt, "-o", str(out))
        row[f"{rt}_int8"] = cli_json("eval", str(out), "--data", "scenes", "--workers", "0")[key]
        row[f"{rt}_snr_db"] = report["logit_snr_db"][0]
    return row


# ---- report -------------------------------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"{env['cpu']}, {env['threads']} threads, {env['date']}, load {env['load_before']} before, "
             f"{env['load_after']} after; torch {env['torch']}, onnxruntime {env['onnxruntime']}, executorch "
             f"{env['executorch']}", "", "Digits val top-1 (360 images), fp32 -> INT8:", "",
             "| model | fp32 (PyTorch) | ORT INT8 | ORT SNR dB | ExecuTorch fp32 | ExecuTorch INT8 | ET SNR dB |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in report["accuracy"].items():
        cells = [row.get(k) for k in ("fp32", "ort_int8", "ort_snr_db", "et_fp32", "et_int8", "et_snr_db")]
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
    if report.get("dense"):
        lines += ["", "Digit scenes val split (the `scenes` data set), fp32 -> INT8:", "",
                  "| model | metric | fp32 (PyTorch) | ORT INT8 | ORT SNR dB | ExecuTorch INT8 | ET SNR dB |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, row in report["dense"].items():
            cells = [row.get(k) for k in ("fp32", "ort_int8", "ort_snr_db", "et_int8", "et_snr_db")]
            lines.append(f"| {name} | {row['metric']} | " + " | ".join("-" if c is None else f"{c:.4g}" for c in cells)
                         + " |")
    for key, title in (("latency", f"{env['threads']}-thread wall ms"), ("cpu_ms", "1-thread CPU ms")):
        lines += speed_table(report, key, title)
    if report.get("groups"):
        lines += group_table(report)
    return "\n".join(lines) + "\n"


def speed_table(report: dict, key: str, title: str) -> list[str]:
    lines = ["", f"Fixture weights, {SIZE}x{SIZE}, batch 1: INT8 logit SNR and {title} (median over rounds)", "",
             "| model | ORT SNR dB | ORT fp32 | ORT INT8 | ratio | ET SNR dB | ET fp32 | ET INT8 | ratio |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in report["speed"].items():
        t, s = row[key], row["snr_db"]
        cells = []
        for rt in ("ort", "et"):
            if f"{rt}_fp32" in t:
                f32, i8 = t[f"{rt}_fp32"]["median_ms"], t[f"{rt}_int8"]["median_ms"]
                cells += [f"{s[f'{rt}_int8']:.1f}", f"{f32:.2f}", f"{i8:.2f}", f"{i8 / f32:.2f}x"]
            else:
                cells += ["-"] * 4
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def environment(threads: int, load: list[float]) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def v(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "-"
    from mobilevitv3.bench.timing import cpu_model
    return {"cpu": cpu_model(), "machine": platform.machine(), "threads": threads,
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": [round(x, 2) for x in load],
            "torch": torch.__version__, "onnxruntime": v("onnxruntime"), "executorch": v("executorch")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--time", help=argparse.SUPPRESS)
    p.add_argument("--runs", nargs=2, type=Path, metavar=("XXS_RUN", "050_RUN"))
    p.add_argument("--models", nargs="+", default=["mobilevitv3_xxs", "mobilevitv3_050", "mobilevitv3_s"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dense", nargs="+", type=Path, default=[], metavar="CKPT",
                   help="segmentation / detection checkpoints trained on the scenes (scripts/scenes.sh)")
    p.add_argument("--dense-calib-images", type=int, default=64)
    p.add_argument("--no-executorch", dest="executorch", action="store_false")
    p.add_argument("--no-accuracy", dest="accuracy", action="store_false")
    p.add_argument("--no-speed", dest="speed", action="store_false")
    p.add_argument("--groups", nargs="+", choices=tuple(GROUP_FORMATS), default=[],
                   help="time the INT8 layer-group variants in these runtimes (and nothing else)")
    p.add_argument("--default-groups-only", action="store_true",
                   help="with --groups: only the float paths and the default INT8 file of each runtime")
    p.add_argument("--out", type=Path, default=HERE / "quantization")
    args = p.parse_args()
    if args.time:
        print(json.dumps(time_file(args.time, args.threads, args.iters)))
        return
    torch.set_num_threads(args.threads)
    report = {"environment": environment(args.threads, list(os.getloadavg())), "accuracy": {}, "speed": {}}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if args.groups:
            args.accuracy, args.speed, args.dense = False, False, []
        for name in args.models if args.groups else []:
            every = not args.default_groups_only
            files = {k: v for rt in args.groups for k, v in group_files(name, rt, tmp, every).items()}
            report.setdefault("groups", {})[name] = timed_rounds(files, args.threads, args.iters, args.rounds)
            print(name, report["groups"][name], file=sys.stderr, flush=True)
        if args.accuracy:
            for name, run in zip(("mobilevitv3_xxs", "mobilevitv3_050"), args.runs or (None, None)):
                report["accuracy"][name] = digits_accuracy(name, run, tmp, args.executorch)
                print(name, report["accuracy"][name], file=sys.stderr, flush=True)
        for ckpt in args.dense:
            report.setdefault("dense", {})[str(ckpt)] = dense_accuracy(ckpt, tmp, args.executorch,
                                                                       args.dense_calib_images)
            print(ckpt, report["dense"][str(ckpt)], file=sys.stderr, flush=True)
        for name in args.models if args.speed else []:
            files, snr = build_files(name, tmp, args.executorch)
            report["speed"][name] = {"snr_db": snr, "latency": timed_rounds(files, args.threads, args.iters,
                                                                           args.rounds),
                                     "cpu_ms": timed_rounds(files, 1, args.iters, args.rounds)}
            print(name, report["speed"][name], file=sys.stderr, flush=True)
    report["environment"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
