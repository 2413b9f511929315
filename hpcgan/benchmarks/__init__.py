"""``hpcgan bench <name> [flags]``: microbenchmarks, looked up by name.

Each benchmark parses its own flags (``--help`` and bad flags end in ``SystemExit``, which
``hpcgan bench`` turns into the exit status), measures the thing and what it is compared with in the same
run, prints a table on rank 0 and returns an exit status.
"""
from __future__ import annotations

from typing import Callable

from ..registry import Registry

Benchmark = Callable[[list[str]], int]
BENCHMARKS: Registry[Benchmark] = Registry("benchmark")

from . import comm, data, recorder, sharing  # noqa: E402,F401  (register them)
