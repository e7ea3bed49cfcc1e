"""Issue 20's per-group table for the cells that missed: every INT8 variant of `benchmarks/quantization.py
--groups` (the default float groups, none, each group kept float in addition or quantized in addition) beside the
runtime's float paths, timed in alternating rounds, each file in its own process.

    python benchmarks/results/cpu-2026-12-04/int8_groups.py ov:mobilevitv3_s ort:mobilevitv3_050 ov:mobilevitv3_050

Writes int8_groups.json here (committed as int8_groups_ov_s_ort_050_ov_050.json).
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
out = {}
for pair in sys.argv[1:]:
    runtime, name = pair.split(":")
    files = q.group_files(name, runtime, tmp, every_variant=True)
    timed = q.timed_rounds(files, 2, 40, int(os.environ.get("ROUNDS", 3)))
    out[pair] = {k: round(v["median_ms"], 2) for k, v in timed.items()}
    print(pair, json.dumps(out[pair]), flush=True)
    (HERE / "int8_groups.json").write_text(json.dumps(out, indent=1))
