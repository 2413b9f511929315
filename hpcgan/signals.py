"""Stop requests from the batch system while training: SIGTERM and SIGINT (the time limit, a
preemption, Ctrl-C; ``mpiexec`` forwards both to every rank) and SIGUSR1 (the warning Slurm sends
ahead of the limit with ``--signal=USR1@SECONDS``).

Inside ``with StopSignals() as stop:`` the first such signal only sets ``stop.received`` (its
number); the training loop reads it where it decides whether to go on (:mod:`hpcgan.train`), so
the run finishes its step, flushes, checkpoints and exits non-zero. A second signal of a kind
already received takes its default action (a second Ctrl-C kills). Outside the block, and in
threads other than the main one (where Python cannot install handlers), nothing changes.
"""
from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopSignals:
    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS):
        self.signals = signals
        self.received = 0  # the first stop signal's number, 0 while none came
        self._seen: set[int] = set()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if signum in self._seen:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self._seen.add(signum)
        self.received = self.received or signum
