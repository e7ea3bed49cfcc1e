"""OpenVINO: the default INT8 IR with its float ops in f32 and in bf16, beside the float IR in f32 and bf16, timed in
alternating rounds, each file in its own process (the run behind open_openvino's default for INT8 IRs).

    ROUNDS=5 python benchmarks/results/cpu-2026-12-04/int8_openvino_float_ops.py mobilevitv3_s mobilevitv3_xxs

Run before that default changed ("ov int8" then opened in f32); int8_openvino_float_ops.json holds both runs.
"""
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
import quantization as q  # noqa: E402

tmp = Path(tempfile.mkdtemp())
for name in sys.argv[1:] or ["mobilevitv3_xxs", "mobilevitv3_050", "mobilevitv3_s"]:
    files = q.group_files(name, "ov", tmp, every_variant=False)
    files["ov int8 bf16rest"] = files["ov int8"] + "#bf16"
    timed = q.timed_rounds(files, 2, 50, int(os.environ.get("ROUNDS", 3)))
    print(name, json.dumps({k: round(v["median_ms"], 2) for k, v in timed.items()}), flush=True)
