"""PhaseTimer: wall time per phase of a training step, the communication hidden behind it, and the
step's CPU time outside collectives."""
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

    Phases nest: a phase entered inside another (compression run by a gradient hook inside
    "compute") pauses the outer one, so the phases of a step never overlap and their sum is at most
    the step's wall time. "comm" is the communication the step *waited* for (exposed);
    communication that ran on the transport worker while the step computed is added with
    :meth:`hidden` and reported as ``t_comm_hidden``, outside that sum.

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
        self.comm_cpu = self.wait_cpu = self.other_cpu = self.comm_hidden = 0.0
        self._open: list[list] = []  # [phase, start] of the phases entered and not left, innermost last
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
        now = time.perf_counter()
        if self._open:  # pause the enclosing phase
            outer = self._open[-1]
            self.times[outer[0]] += now - outer[1]
        self._open.append([phase, now])
        c0 = time.process_time()
        try:
            yield
        finally:
            c1 = time.process_time()
            if self._sync:
                self._wait()
            now = time.perf_counter()
            _, t0 = self._open.pop()
            self.times[phase] += now - t0
            if self._open:  # resume the enclosing phase
                self._open[-1][1] = now
            if phase == "comm":
                self.comm_cpu += c1 - c0

    def hidden(self, seconds: float) -> None:
        """Add communication that ran behind the step's compute (on the transport worker)."""
        self.comm_hidden += max(0.0, seconds)

    def not_work(self, cpu_seconds: float) -> None:
        """Leave ``cpu_seconds`` of process CPU time out of ``cpu`` (a transport worker spinning
        inside a collective: waiting, not the rank's work)."""
        self.other_cpu += cpu_seconds

    def take(self) -> dict[str, float]:
        """The accumulated times as ``t_<phase>`` keys, ``t_comm_hidden`` and ``cpu``; then reset
        and begin anew."""
        cpu = time.process_time() - self.cpu0 - self.comm_cpu - self.wait_cpu - self.other_cpu
        out = {**{f"t_{p}": t for p, t in self.times.items()}, "t_comm_hidden": self.comm_hidden, "cpu": cpu}
        self.times = dict.fromkeys(PHASES, 0.0)
        self.comm_cpu = self.wait_cpu = self.other_cpu = self.comm_hidden = 0.0
        self.begin()
        return out
