"""The one logger. Rank 0 prints progress; other ranks only report errors."""
from __future__ import annotations

import logging
import sys
import time
from typing import Callable

LOGGER_NAME = "hpcgan"


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def setup_logging(rank: int, level: int = logging.INFO) -> logging.Logger:
    """Configure the hpcgan logger once per process: INFO on rank 0, ERROR elsewhere."""
    log = get_logger()
    log.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    prefix = "hpcgan" if rank == 0 else f"hpcgan[rank {rank}]"
    handler.setFormatter(logging.Formatter(f"{prefix} %(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(level if rank == 0 else logging.ERROR)
    log.propagate = False
    return log


#: Long work logs a progress line at least this often [s] (plain log lines: they reach Slurm logs,
#: where progress bars are hidden).
PROGRESS_EVERY = 10.0
#: The time left is estimated from the steps of about this many recent seconds [s].
ETA_WINDOW = 60.0


class Progress:
    """Progress of ``total`` units of work as log lines by time: at most one per ``every`` seconds
    (the first after ``every`` seconds, so quick work prints nothing), with the rate and the time
    left. Rank 0 prints, as with every log line."""

    def __init__(self, what: str, total: int, unit: str, every: float = PROGRESS_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.unit, self.every, self.clock = what, total, unit, every, clock
        self.t0 = self.last = clock()
        self.done = 0

    def update(self, done: int) -> None:
        """``done`` units finished so far."""
        self.done = done
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            rate = done / max(now - self.t0, 1e-9)
            left = f", {(self.total - done) / rate:.0f} s left" if rate > 0 and self.total else ""
            pct = f" ({100 * done / self.total:.0f}%)" if self.total else ""
            get_logger().info("%s: %d/%d %s%s, %.3g %s/s%s", self.what, done, self.total, self.unit, pct, rate,
                              self.unit, left)

    def close(self) -> None:
        """A closing line with the total time, if any progress line was printed."""
        if self.last > self.t0:
            get_logger().info("%s: %d %s in %.0f s", self.what, self.done, self.unit, self.clock() - self.t0)


class Eta:
    """Time left from the recent pace: steps per second over the last :data:`ETA_WINDOW` seconds
    of calls, evaluations, checkpoints and waits for a loaded machine's cores included (a median
    step time leaves them all out and promises too little).

    Invariant: ``marks`` holds (time, step) pairs in call order, the oldest one at least ``window``
    seconds old when there is one, so the pace covers the whole window."""

    def __init__(self, window: float = ETA_WINDOW, clock: Callable[[], float] = time.monotonic):
        self.window, self.clock = window, clock
        self.marks: list[tuple[float, int]] = []

    def seconds(self, step: int, total: int, fallback: float = float("nan")) -> float:
        """Seconds until ``total`` steps at the recent pace; ``fallback`` seconds per step on the
        first call (no pace yet)."""
        now = self.clock()
        self.marks.append((now, step))
        while len(self.marks) > 2 and now - self.marks[1][0] >= self.window:
            self.marks.pop(0)
        (t0, s0), (t1, s1) = self.marks[0], self.marks[-1]
        per_step = (t1 - t0) / (s1 - s0) if s1 > s0 else fallback
        return max(total - step, 0) * per_step

    def line(self, step: int, total: float, fallback: float = float("nan")) -> str:
        """"  eta 42s" for the progress line ("" without a known total or pace)."""
        if total != total or total <= 0:  # NaN: a time budget, not a step count
            return ""
        left = self.seconds(step, int(total), fallback)
        return f"  eta {left:.0f}s" if left == left else ""
