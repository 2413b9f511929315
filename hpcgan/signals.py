"""Stop requests from the batch system while training: SIGTERM and SIGINT (the time limit, a
preemption, Ctrl-C; ``mpiexec`` forwards both to every rank) and SIGUSR1 (the warning Slurm sends
ahead of the limit with ``--signal=USR1@SECONDS``).

Inside ``with StopSignals() as stop:`` the first such signal only sets ``stop.received`` (its
number); the training loop reads it where it decides whether to go on (:mod:`hpcgan.train`), so
the run finishes its step, flushes, checkpoints and exits non-zero. A second signal of a kind
already received takes its default action (a second Ctrl-C kills). Outside the block, and in
threads other than the main one (where Python cannot install handlers), nothing changes.

Slurm sends its ``--signal`` warning once. A process that is still starting (importing torch,
loading data, building models: easily a minute at scale) would die of it, or lose it, before any
``StopSignals`` exists. :func:`hold_early` therefore installs handlers that only remember the first
such signal; the first ``StopSignals`` then takes it over as received (the run stops at its first
step boundary, checkpointed) and restores the original handlers on exit.
"""
from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

#: While :func:`hold_early` is in force: the handlers it replaced, and the stop signals it caught.
_held: dict[int, object] = {}
_pending: list[int] = []


def _remember(signum: int, frame) -> None:
    if signum in _pending:  # a second one of a kind: its default action, as in StopSignals
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
        return
    _pending.append(signum)


def hold_early(signals: tuple[int, ...] = STOP_SIGNALS) -> None:
    """Remember stop signals from now until the first :class:`StopSignals` takes them over (call it
    first thing in a command that will train; main thread only, else nothing)."""
    if threading.current_thread() is threading.main_thread() and not _held:
        for s in signals:
            _held[s] = signal.signal(s, _remember)


def held() -> int:
    """The first stop signal :func:`hold_early` caught and no :class:`StopSignals` took over; 0 if none."""
    return _pending[0] if _pending else 0


class StopSignals:
    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS):
        self.signals = signals
        self.received = 0  # the first stop signal's number, 0 while none came
        self._seen: set[int] = set()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                previous = signal.signal(s, self._handle)
                self._previous[s] = _held.pop(s, previous)  # on exit: the handler before hold_early
            for s in _pending:  # caught during start-up: as if they came now
                if s in self.signals:
                    self._handle(s, None)
            _pending.clear()
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
