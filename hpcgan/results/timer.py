"""PhaseTimer: wall time per phase of a training step, and the step's CPU time outside collectives."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

PHASES = ("compute", "compress", "comm", "update")


def device_sync(device: torch.device | None) -> Callable[[], None] | None:
    """What waits for ``device`` to finish the work queued on it: None on the CPU (torch ops there
    run synchronously), ``torch.cuda.synchronize(device)`` on CUDA."""
    if device is None or device.type != "cuda":
        return None
    return lambda: torch.cuda.synchronize(device)


class PhaseTimer:
    """Accumulates wall time per phase of a step, and the process CPU time of the step outside
    the "comm" phase, from :meth:`begin` to :meth:`take` (the rank's own work: CPU time does not
    advance while the rank is descheduled, so on an oversubscribed node it measures the work, not
    the wait for a core).

    On a CUDA device, kernels run asynchronously: a phase's host code returns once its kernels are
    queued, and without a synchronisation their run time would land in whichever later phase waits
    for them first (usually "comm", where a host-staged copy or a collective blocks). So on CUDA
    every phase synchronises the device when it ends, inside the phase: the phase's time includes
    the GPU work it launched. It also synchronises when it begins, outside the phase, so work queued
    between phases (e.g. the batch's non-blocking host-to-device copy) is not charged to it. On the
    CPU there is nothing to wait for and nothing is added. Either way a phase's time is the time
    from its start until its work is done, and the step's wall time covers every phase, so the
    ``/steps`` columns mean the same on CPU and GPU runs. The host CPU time spent in these waits
    (the CUDA runtime spins while it waits) is left out of ``cpu``, which stays the host's own work.
    """

    def __init__(self, device: torch.device | None = None):
        self._sync = device_sync(device)
        self.times = dict.fromkeys(PHASES, 0.0)
        self.comm_cpu = self.wait_cpu = 0.0
        self.cpu0 = time.process_time()

    def begin(self) -> None:
        """Start of a step: CPU time counts from here."""
        self.cpu0 = time.process_time()

    def _wait(self) -> None:
        """Wait for the device; the host CPU time spent waiting is not the rank's work."""
        c0 = time.process_time()
        self._sync()
        self.wait_cpu += time.process_time() - c0

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        if self._sync:
            self._wait()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            c1 = time.process_time()
            if self._sync:
                self._wait()
            self.times[phase] += time.perf_counter() - t0
            if phase == "comm":
                self.comm_cpu += c1 - c0

    def take(self) -> dict[str, float]:
        """The accumulated times as ``t_<phase>`` keys and ``cpu``; then reset and begin anew."""
        cpu = time.process_time() - self.cpu0 - self.comm_cpu - self.wait_cpu
        out = {**{f"t_{p}": t for p, t in self.times.items()}, "cpu": cpu}
        self.times, self.comm_cpu, self.wait_cpu = dict.fromkeys(PHASES, 0.0), 0.0, 0.0
        self.begin()
        return out
