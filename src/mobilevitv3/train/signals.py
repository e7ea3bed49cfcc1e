"""How a run answers the signals of a terminal, a scheduler or torchrun, in the main process and its loader workers.

Schedulers (SLURM, Kubernetes) and torchrun signal the whole process group, so DataLoader workers receive the
same signal as the trainer: workers ignore them all and the main process decides (otherwise a worker dies first
and the trainer stops with a DataLoader error, nothing saved). In the main process:
- SIGINT (Ctrl-C), SIGTERM (preemption, torchrun stopping its workers), SIGHUP (the terminal went away): save
  last.pt at the next optimiser-step boundary, then exit 128 + the signal number (130, 143, 129). A second one
  of these acts at once, as it would without us.
- SIGUSR1 (SLURM's `--signal=USR1@SECONDS` warning before the time limit): save last.pt at the next step boundary
  and carry on; the SIGTERM that follows saves again.
"""
from __future__ import annotations

import contextlib
import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SAVE_SIGNALS = (signal.SIGUSR1,)


class Stopped(KeyboardInterrupt):
    """The run stopped on a signal after saving; the CLI exits 128 + `signum`."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


class Signals:
    """`with Signals() as s:` records stop/save requests for the training loop to act on at a step boundary."""

    def __init__(self) -> None:
        self.stop: int = 0            # the stop signal received (0: none)
        self.save: bool = False
        self._old: dict[int, object] = {}

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop = signum
        for sig in STOP_SIGNALS:       # the next stop signal takes its usual effect at once
            signal.signal(sig, self._old[sig])

    def _on_save(self, signum: int, frame: FrameType | None) -> None:
        self.save = True

    def __enter__(self) -> Signals:
        with contextlib.suppress(ValueError):   # not in the main thread: no handler, the signal is not ours
            for sig in STOP_SIGNALS + SAVE_SIGNALS:
                self._old[sig] = signal.signal(sig, self._on_stop if sig in STOP_SIGNALS else self._on_save)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def ignore_in_worker(_: int) -> None:
    """DataLoader `worker_init_fn`: the main process alone answers the signals sent to the process group."""
    for sig in STOP_SIGNALS + SAVE_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
