"""A benchmark worker: one implementation in one runtime, in a process of its own (`python -m
mobilevitv3.bench.worker`), driven by the harness in `timing.py` over its stdin/stdout, one JSON object a line.

Between requests the worker blocks on its pipe, so nothing of it computes while another worker is timed. Threads
are set here, explicitly (torch intra-op threads; onnxruntime / XNNPACK pools get the same count). Anything a
library prints goes to stderr: stdout carries the protocol only.

Requests: {"cmd": "setup", "spec": {...}} -> {"params", "setup_s", "threads", ...};
{"cmd": "time", "kind": "infer"|"train", "batch": B, "n": K} -> {"times": [K seconds]};
{"cmd": "memory", "kind", "batch"} -> {"mb"}; {"cmd": "sgemm"} -> {"gflops"}; {"cmd": "quit"}.
Failures reply {"error": message, "user": whether it is a UserError}.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

import torch

from ..errors import UserError
from .runtimes import Built, Spec, build


class Worker:
    def __init__(self) -> None:
        self.spec: Spec | None = None
        self.built: Built | None = None

    def handle(self, msg: dict) -> dict:
        cmd = msg["cmd"]
        if cmd == "setup":
            return self.setup(Spec(**{**msg["spec"], "batch_sizes": tuple(msg["spec"]["batch_sizes"])}))
        if cmd == "sgemm":
            torch.set_num_threads(msg["threads"])
            return {"gflops": sgemm_gflops()}
        if self.built is None:
            raise RuntimeError(f"{cmd!r} before setup")
        if cmd == "time":
            start = time.time()
            times = self.time(self.call(msg["kind"], msg["batch"]), msg["n"])
            return {"times": times, "span": [start, time.time()]}   # wall clock: turns never overlap
        if cmd == "memory":
            return {"mb": peak_memory_mb(self.call(msg["kind"], msg["batch"]), self.spec.device)
                    if self.built.torch_ops else None}
        raise ValueError(f"unknown request {cmd!r}")

    def setup(self, spec: Spec) -> dict:
        start = time.perf_counter()
        torch.set_num_threads(spec.threads)
        torch.manual_seed(0)
        self.spec, self.built = spec, build(spec)
        for batch in spec.batch_sizes:  # first calls: compilation, graph optimisation, allocator growth
            self.call("infer", batch)()
        return {"params": self.built.params, "setup_s": time.perf_counter() - start, "pid": os.getpid(),
                "threads": torch.get_num_threads(), "runtime_version": self.built.runtime_version,
                "train": self.built.train is not None, **self.built.info}

    def call(self, kind: str, batch: int) -> Callable[[], object]:
        if kind == "train":
            if self.built.train is None:
                raise ValueError(f"{self.spec.label} has no training step")
            return self.built.train(batch)
        return self.built.infer(batch)

    def time(self, fn: Callable[[], object], n: int) -> list[float]:
        """Seconds per call: a monotonic clock around each call; on CUDA a pair of CUDA events and a synchronize
        (the official latency protocol). Not torch.utils.benchmark.Timer: the harness needs every call's own time
        (medians and percentiles over turns interleaved across worker processes), where Timer gives block means."""
        if self.spec.device == "cuda" and self.built.torch_ops:
            out = []
            for _ in range(n):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                out.append(start.elapsed_time(end) / 1e3)
            return out
        out = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
        return out


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This process's float32 matrix-multiply rate at its thread count: the best of `repeats` n x n products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    for _ in range(3):
        torch.mm(a, b, out=out)
    best = min(_seconds(lambda: torch.mm(a, b, out=out)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(fn: Callable[[], object]) -> float:
    """One call's wall time: sgemm_gflops keeps the best call (the rate the cores reach), not Timer's block mean."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_memory_mb(fn: Callable[[], object], device: str) -> float:
    """MiB one call allocates at its peak above what was allocated before it."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


def serve(requests: TextIO, replies: TextIO) -> None:
    worker = Worker()
    for line in requests:
        msg = json.loads(line)
        try:
            reply = {} if msg["cmd"] == "quit" else worker.handle(msg)
        except Exception as e:  # noqa: BLE001 -- every failure goes back to the harness, which decides
            reply = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}",
                     "user": isinstance(e, UserError)}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
        if msg["cmd"] == "quit":
            return


def main() -> None:
    replies = os.fdopen(os.dup(1), "w")   # the protocol keeps the real stdout ...
    os.dup2(2, 1)                          # ... and anything else printed there (C or Python) goes to stderr
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
