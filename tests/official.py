"""Deterministic stand-ins for the official release checkpoints, and the golden outputs they must produce.

`tests/fixtures/*.json` are the reference fixtures of the official code (copied from the project's shared
reference, data only). Each tensor of an official state dict is drawn from a generator seeded with the CRC-32 of
its official key, fan-in scaled, so that writing it to a file gives a checkpoint in the exact official layout.
"""
from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import torch

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _tensor(name: str, shape: list[int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.long)
    if name.endswith("running_var"):
        return torch.rand(shape, generator=g) + 0.5
    if name.endswith("running_mean"):
        return torch.randn(shape, generator=g) * 0.1
    if len(shape) >= 2:
        return torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
    if name.endswith("weight"):
        return torch.rand(shape, generator=g) + 0.5
    return torch.randn(shape, generator=g) * 0.05


def official_state_dict(fx: dict) -> dict[str, torch.Tensor]:
    return {name: _tensor(name, shape) for name, shape in fx["state_dict"]}


def inputs(fx: dict) -> list[torch.Tensor]:
    return [torch.randn(s["shape"], generator=torch.Generator().manual_seed(s["seed"])) for s in fx["inputs"]]


def assert_matches(out: torch.Tensor, expected: dict, tolerance: dict) -> None:
    """Compare with a stored output: in full, or at the stored sample indices plus mean/std."""
    assert list(out.shape) == expected["shape"]
    if "values" in expected:
        torch.testing.assert_close(out, torch.tensor(expected["values"]), **tolerance)
        return
    flat = out.flatten()
    torch.testing.assert_close(flat[torch.tensor(expected["sample_index"])],
                               torch.tensor(expected["sample_values"]), **tolerance)
    torch.testing.assert_close(flat.double().mean().item(), expected["mean"], **tolerance)
    torch.testing.assert_close(flat.double().std().item(), expected["std"], **tolerance)
