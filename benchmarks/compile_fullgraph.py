"""Compile every registered model with `torch.compile(fullgraph=True)` (a graph break raises) and compare with eager.

    python benchmarks/compile_fullgraph.py --backend aot_eager          # all models, minutes on two cores
    python benchmarks/compile_fullgraph.py --backend inductor mobilevit_s ssdlite_mobilevitv3_s

The test suite compiles a subset (tests/test_fast_paths.py); this script is the whole-registry check.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

import mobilevitv3


def check(name: str, backend: str, size: int) -> float:
    """Max abs difference between the compiled and the eager model on one random image."""
    torch._dynamo.reset()
    model = mobilevitv3.create_model(name).eval()
    compiled = torch.compile(model, fullgraph=True, backend=backend, dynamic=False)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        ref, out = model(x), compiled(x)
    refs, outs = (ref, out) if isinstance(ref, tuple) else ((ref,), (out,))
    return max((a - b).abs().max().item() for a, b in zip(refs, outs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="models (default: every registered one)")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.names or mobilevitv3.list_models()
    failed = []
    for name in names:
        start = time.perf_counter()
        try:
            diff = check(name, args.backend, args.image_size)
            print(f"{name:40s} ok    max |compiled - eager| {diff:.1e}  {time.perf_counter() - start:.0f}s", flush=True)
        except Exception as e:  # noqa: BLE001 -- report every model, then fail
            failed.append(name)
            print(f"{name:40s} FAIL  {str(e).splitlines()[0][:160]}", flush=True)
    print(f"{len(names) - len(failed)}/{len(names)} compiled with fullgraph=True, backend={args.backend}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
