"""Combinations of float groups for one runtime (ov: OpenVINO, ort: onnxruntime), after int8_groups.py: each
model's float file(s) and one INT8 file per combination, timed in alternating rounds, each file in its own process.

    python benchmarks/results/cpu-2026-12-04/int8_group_combos.py ov mobilevitv3_050 mobilevitv3_s mobilevitv3_xxs \
        mobilevitv3_100
    python benchmarks/results/cpu-2026-12-04/int8_group_combos.py ort mobilevitv3_xxs mobilevitv3_050 mobilevitv3_s \
        mobilevitv3_100

Writes int8_group_combos_RUNTIME.json here.
"""
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
import quantization as q  # noqa: E402
from mobilevitv3 import create_model  # noqa: E402
from mobilevitv3.export import export  # noqa: E402
from mobilevitv3.export.quantize import quantize  # noqa: E402

COMBOS = {
    "ov": {"none": (), "fusion": ("fusion",), "fusion+dw": ("fusion", "depthwise"),
           "fusion+dw+kxk": ("fusion", "depthwise", "local_kxk"),
           "fusion+dw+kxk+stem": ("fusion", "depthwise", "local_kxk", "stem")},
    "ort": {"stem+attn": ("stem", "attention"), "attn": ("attention",), "attn+fusion": ("attention", "fusion")},
}
runtime = sys.argv[1]
fmt, suffix = q.GROUP_FORMATS[runtime]
tmp = Path(tempfile.mkdtemp())
out = {}
for name in sys.argv[2:]:
    model = create_model(name).eval()
    calib = list(torch.rand(32, 3, q.SIZE, q.SIZE, generator=torch.Generator().manual_seed(0)))
    files = {"fp32": tmp / f"{name}.fp32.{suffix}"}
    export(model, fmt, files["fp32"], image_size=q.SIZE, fuse=True)
    for label, groups in COMBOS[runtime].items():
        files[label] = tmp / f"{name}.{label}.{suffix}"
        with contextlib.redirect_stdout(sys.stderr):     # NNCF's progress bars
            quantize(model, fmt, files[label], calibration=calib, verify=False, float_groups=groups,
                     compare_speed=False)
    named = {k: str(v) for k, v in files.items()}
    if runtime == "ov":
        named["bf16"] = f"{files['fp32']}#bf16"
    timed = q.timed_rounds(named, 2, 40, int(os.environ.get("ROUNDS", 3)))
    out[name] = {k: round(v["median_ms"], 2) for k, v in timed.items()}
    print(runtime, name, json.dumps(out[name]), flush=True)
    (HERE / f"int8_group_combos_{runtime}.json").write_text(json.dumps(out, indent=1))
