"""PhaseTimer: wall time per phase of a training step, and the step's CPU time outside collectives."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

PHASES = ("compute", "compress", "comm", "update")


class PhaseTimer:
    """Accumulates wall time per phase of a step, and the process CPU time of the step outside
    the "comm" phase, from :meth:`begin` to :meth:`take` (the rank's own work: CPU time does not
    advance while the rank is descheduled, so on an oversubscribed node it measures the work, not
    the wait for a core). On CUDA it synchronizes before reading the clocks."""

    def __init__(self, device: torch.device | None = None):
        self._sync: Callable[[], None] | None = (
            torch.cuda.synchronize if device is not None and device.type == "cuda" else None
        )
        self.times = dict.fromkeys(PHASES, 0.0)
        self.comm_cpu = 0.0
        self.cpu0 = time.process_time()

    def begin(self) -> None:
        """Start of a step: CPU time counts from here."""
        self.cpu0 = time.process_time()

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        if self._sync:
            self._sync()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            if self._sync:
                self._sync()
            self.times[phase] += time.perf_counter() - t0
            if phase == "comm":
                self.comm_cpu += time.process_time() - c0

    def take(self) -> dict[str, float]:
        """The accumulated times as ``t_<phase>`` keys and ``cpu``; then reset and begin anew."""
        out = {**{f"t_{p}": t for p, t in self.times.items()}, "cpu": time.process_time() - self.cpu0 - self.comm_cpu}
        self.times, self.comm_cpu = dict.fromkeys(PHASES, 0.0), 0.0
        self.begin()
        return out
