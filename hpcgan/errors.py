"""Errors that every rank raises together, so the job can stop cleanly without MPI_Abort.

A :class:`CollectiveError` must be raised on every rank at about the same time: after the ranks
agreed (a bcast or an allgather of the outcome), as :func:`agree` and :func:`collectively` do for
checks that each rank makes on its own (its dataset file, its checkpoint). The entry point then
exits every rank with the error's code and rank 0 prints it once. One raised on some ranks only is
caught there too: those ranks wait a few seconds for the others, then abort the job naming their
rank and the error, so no rank is left waiting in a collective. Anything else raised on a rank is
a fault: that rank prints its traceback and aborts the job.
"""
from __future__ import annotations

import argparse
import errno
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


class CollectiveError(Exception):
    """Raised the same way on every rank; rank 0 reports it once. ``agreed`` is True when it is
    known to be raised on every rank (it follows an agreement), so that a collective clean-up on
    the way out (closing the results file) cannot hang."""

    exit_code = 1
    agreed = False

    def everywhere(self) -> "CollectiveError":
        """Mark it as raised on every rank (call right after the agreement); returns it."""
        self.agreed = True
        return self


class UsageError(CollectiveError, ValueError):
    """A mistake in what the user asked for: flags, names, files."""

    exit_code = 2


class NonFiniteLossError(CollectiveError, FloatingPointError):
    """A loss became NaN or inf; names the first step and rank where it happened."""

    def __init__(self, step: int, rank: int, which: str):
        super().__init__(f"non-finite {which} at step {step} on rank {rank}; results so far are kept")
        self.step, self.rank, self.which = step, rank, which


class WriteError(CollectiveError):
    """An output (results file, checkpoint) could not be written: names the path and why."""


class Interrupted(CollectiveError):
    """The run stopped on a signal (SIGTERM/SIGINT at a time limit or preemption, SIGUSR1 as a
    warning): exits with 128 + the signal's number, as a process killed by it would."""

    agreed = True  # raised only once the ranks agreed on the signal

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class RankError(CollectiveError):
    """The error one rank had, raised on every rank by :func:`agree` (keeps that error's exit code)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class UsageParser(argparse.ArgumentParser):
    """An argument parser whose mistakes become a UsageError: one ``hpcgan: error: ...`` line from
    rank 0 and exit 2, naming the subcommand ("train: argument --steps: ...") but not hpcgan twice."""

    def error(self, message: str):
        where = self.prog.removeprefix("hpcgan").strip()
        raise UsageError(f"{where}: {message}" if where else message)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def agree(comm, error: BaseException | None) -> None:
    """Collective: raise on every rank the error of the first rank that had one, naming that rank
    unless all ranks failed; return if no rank had an error. A UsageError or WriteError keeps its
    class, anything else becomes a RankError with its exit code."""
    found = comm.allgather(None if error is None else (str(error), getattr(error, "exit_code", 1),
                                                       next((k.__name__ for k in _KEPT if isinstance(error, k)), "")))
    failed = [r for r, item in enumerate(found) if item is not None]
    if not failed:
        return
    message, code, kind = found[failed[0]]
    if len(failed) < len(found):
        others = f" (also ranks {', '.join(map(str, failed[1:]))})" if len(failed) > 1 else ""
        message = f"rank {failed[0]}: {message}{others}"
    kept = {k.__name__: k for k in _KEPT}
    raise (kept[kind](message) if kind else RankError(message, code)).everywhere()


_KEPT = (UsageError, WriteError)


def collectively(comm, check: Callable[[], T]) -> T:
    """``check()`` on every rank, where it may fail on some ranks only (a file missing on one
    node): a UsageError or OSError on any rank is raised on every rank, naming the rank."""
    try:
        result, error = check(), None
    except (UsageError, OSError) as e:
        result, error = None, (e if isinstance(e, UsageError) else UsageError(str(e)))
    agree(comm, error)
    return result


def write_failure(path: str | Path, exc: BaseException) -> str:
    """Why writing ``path`` failed, in words: the OS error (HDF5 only quotes its errno in the
    message, torch not even that), else "no space left on device" when its filesystem is full."""
    code = getattr(exc, "errno", None)
    if not code:
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    if code == errno.ENOSPC:
        return "no space left on device"
    if code:
        return os.strerror(code).lower()
    try:
        if shutil.disk_usage(Path(path).parent).free < 1 << 20:
            return "no space left on device"
    except OSError:
        pass
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
