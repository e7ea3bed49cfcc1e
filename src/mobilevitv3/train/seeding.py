"""Randomness that a resumed run reproduces exactly: every training sample is augmented, and every batch mixed, under
its own seed derived from (run seed, rank, epoch, step, position), inside `torch.random.fork_rng`, so the result does
not depend on which process (main or DataLoader worker) computes it or on where the run was resumed. The main
process's own stream (dropout) is saved in `last.pt` and restored; the DataLoader draws its worker seeds from a
private generator, never from that stream.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

MASK = 2**63 - 1


def mix(*parts: int) -> int:
    """A 63-bit seed from non-negative integers: NumPy's `SeedSequence` hashes them, so nearby inputs (consecutive
    steps or samples) give unrelated seeds."""
    return int(np.random.SeedSequence(parts).generate_state(1, np.uint64)[0]) & MASK


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch (CPU), Python and NumPy generators seeded with `seed` inside; their previous states restored after."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        # the CPU generator alone: torch.manual_seed would also queue a seed for every accelerator type, recording
        # a Python stack each time (~1 ms a sample, half of an epoch's data time on digits), outside the fork
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed & 0xFFFFFFFF)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


class SeededBatches(Sampler[list]):
    """Wraps the trainer's batch sampler: each key becomes `(key, seed)`, the seed a function of the position."""

    def __init__(self, batches: Any, seed: int, rank: int) -> None:
        self.batches, self.seed, self.rank = batches, seed, rank

    def __iter__(self) -> Iterator[list]:
        epoch, start = self.batches.epoch, self.batches.start_step
        for step, batch in enumerate(self.batches, start):
            yield [(key, mix(self.seed, self.rank, epoch, step, i)) for i, key in enumerate(batch)]

    def __len__(self) -> int:
        return len(self.batches)


class SeededSamples(Dataset):
    """`dataset[key]` computed under the seed the sampler attached; returns `(seed, sample)`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[Any, int]) -> tuple[int, Any]:
        key, seed = item
        with seeded(seed):
            return seed, self.dataset[key]


class SeededCollate:
    """The task's collate (MixUp/CutMix draw here) under a seed derived from the batch's first sample seed."""

    def __init__(self, collate: Callable[[list], Any]) -> None:
        self.collate = collate

    def __call__(self, items: list[tuple[int, Any]]) -> Any:
        with seeded(mix(items[0][0], 1) if items else 0):
            return self.collate([sample for _, sample in items])


def rng_state() -> dict[str, Any]:
    """The main process's generators, as plain types and tensors (weights_only-loadable)."""
    py = random.getstate()
    npy = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": [py[0], list(py[1]), py[2]],
            "numpy": [npy[0], torch.from_numpy(npy[1].astype(np.int64)), int(npy[2]), int(npy[3]), float(npy[4])]}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
