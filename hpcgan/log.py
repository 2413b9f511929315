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
PROGRESS_EVERY = 30.0


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
