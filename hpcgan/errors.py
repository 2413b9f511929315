"""Errors that every rank raises identically, so the job can stop cleanly without MPI_Abort.

Anything else raised on one rank is treated as a fault: the entry point reports the rank and the
error, then aborts the whole job so no rank is left waiting in a collective.
"""


class CollectiveError(Exception):
    """Raised the same way on every rank; rank 0 reports it once."""

    exit_code = 1


class UsageError(CollectiveError, ValueError):
    """A mistake in what the user asked for: flags, names, files."""

    exit_code = 2


class NonFiniteLossError(CollectiveError, FloatingPointError):
    """A loss became NaN or inf; names the first step and rank where it happened."""

    def __init__(self, step: int, rank: int, which: str):
        super().__init__(f"non-finite {which} at step {step} on rank {rank}; results so far are kept")
        self.step, self.rank, self.which = step, rank, which
