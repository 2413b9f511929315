"""The benchmark registry (``hpcgan bench <name>``)."""
from __future__ import annotations

from typing import Callable

from ..registry import Registry

Benchmark = Callable[[list[str]], int]
BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
