"""``hpcgan bench <name> [flags]``: microbenchmarks, looked up by name.

Each benchmark parses its own flags (``--help`` and bad flags end in ``SystemExit``, which
``hpcgan bench`` turns into the exit status), measures the thing and what it is compared with in the same
run, prints a table on rank 0 and returns an exit status.
"""
from .base import BENCHMARKS
from . import comm, data, overhead, overlap, recorder, sharing  # noqa: F401  (register them)

__all__ = ["BENCHMARKS"]
