"""Process group, device and CPU threads for plain `python -m mobilevitv3 train` or `torchrun` (one or more nodes).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE; we use nccl on CUDA and gloo on CPU. Each process
gets `cores / local world size` threads (torchrun would otherwise leave 1); a single process takes every core that
other processes leave idle right now (`default_threads`), unless `threads` is set. On CPU the process also keeps
freed memory for reuse (`keep_freed_memory`). Both are process-wide policies of the training launcher, set when a run
starts, never on import.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout

from ..errors import device_from

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not on Linux
        return os.cpu_count() or 1


def busy_cores(seconds: float = 0.25) -> float | None:
    """Cores that other processes keep busy right now: the non-idle share of the machine's CPU time in /proc/stat
    over `seconds` (steal time counts as busy), times the CPU count. None where /proc/stat cannot be read."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]   # user nice system idle iowait irq softirq steal
        return sum(fields), fields[3] + fields[4]
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / total) if total > 0 else 0.0


def default_threads(local_world: int) -> int:
    """Every core for one process (cores / local world size under torchrun), minus the cores other processes are
    using at this moment (sampled from /proc/stat: the 1-minute load average still counts a job that has just
    ended, so at load 0.8 an idle 2-core machine would get 1 thread).

    The cap matters: OpenMP threads that find their core taken spin in every parallel region; on this project's
    shared 2-core machine at load ~7, a training step at 64x64 ran at 5 img/s with 2 threads against 76 img/s with
    1 (OMP_WAIT_POLICY=PASSIVE, which must be set before torch is imported, also avoids it)."""
    cores = _cores()
    if local_world > 1:   # the other ranks are starting up beside us: what they use now says nothing
        return max(1, cores // local_world)
    busy = busy_cores()
    threads = cores if busy is None else max(1, min(cores, int(cores - busy + 0.5)))
    log.info("%d thread(s) (%d cores, %s busy with other processes)", threads, cores,
             "unknown" if busy is None else f"{busy:.1f}")
    return threads


def setup(device: str = "auto", threads: int | None = None) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    dev = device_from(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    torch.set_num_threads(threads or default_threads(local_world))
    if dev.type == "cpu":
        keep_freed_memory()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world,
                                store=_attempt_store(world))
        log.info("rank %d/%d on %s, %d threads", rank, world, dev, torch.get_num_threads())
    return Dist(rank, world, local_rank, local_world, dev)


def _attempt_store(world: int) -> dist.Store | None:
    """Under torchrun, the agent's store seen through a prefix of its own per restart attempt; None elsewhere (the
    default env:// store). torch shares one agent store across attempts without a prefix, so a restarted rank that
    reaches the process group first reads the previous attempt's addresses of the others and fails to connect."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False,
                         timeout=default_pg_timeout)
    return dist.PrefixStore(f"/mobilevitv3/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", base)


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Make glibc keep freed blocks up to `limit` bytes in the heap instead of returning them to the system.

    By default glibc serves a block above its mmap threshold (128 KiB, rising to at most 32 MiB as blocks are
    freed) with a fresh mmap and unmaps it on free, so each training step's activations arrive as new zeroed
    pages: ~800 page faults per forward of v3-XXS at 256x256, and 1.2x the CPU training step time of the digits
    main job (BENCHMARKS.md). PyTorch has no caching allocator on CPU and the official trainer ran on GPUs, so this
    is ours to set. The heap then stays at the run's peak, which the next step needs again anyway. glibc only
    (mallopt); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = bool(libc.mallopt(m_mmap_threshold, limit)) and bool(libc.mallopt(m_trim_threshold, limit))
    except (OSError, AttributeError):   # not glibc (musl has no mallopt)
        return False
    log.debug("glibc keeps freed blocks up to %d MiB: %s", limit >> 20, ok)
    return ok


def max_ranks(*values: float, ctx: Dist) -> list[float]:
    """Per value: its maximum over the ranks (one all-reduce for all values; keeps ranks in lock-step)."""
    if not ctx.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def gather(obj: Any, *, ctx: Dist) -> list[Any]:
    """Every rank's `obj` (picklable plain types and CPU tensors), in rank order, on every rank."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, *, ctx: Dist) -> Any:
    """Rank 0's `obj` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_ranks(values: dict[str, float], *, ctx: Dist) -> dict[str, float]:
    """Each value summed over the ranks (every rank must pass the same keys)."""
    if not ctx.enabled or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return dict(zip(values, t.tolist()))


def barrier(ctx: Dist) -> None:
    if ctx.enabled:
        dist.barrier()


def cleanup(ctx: Dist) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
