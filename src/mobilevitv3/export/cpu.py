"""What this CPU computes natively, read from Linux's /proc/cpuinfo and never assumed."""
from __future__ import annotations

from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")   # x86 flags of native bf16 dot products (Linux /proc/cpuinfo names)


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux reports them; empty where there is no /proc/cpuinfo."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cpu_has_bf16() -> bool:
    return any(flag in cpu_flags() for flag in BF16_FLAGS)
