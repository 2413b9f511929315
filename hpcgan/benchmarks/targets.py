"""Target lines of the benchmarks: one measured figure, its goal (an interval, either end open, or
none for a reference comparison), printed as ``target <name>: <value> (goal ...)`` and stored as the
HDF5 table ``/targets/{name, value, unit, lo, hi, met}`` (met: 1 met, 0 missed, -1 no goal)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import h5py
import numpy as np


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    unit: str = ""
    lo: float = math.nan
    hi: float = math.nan

    @property
    def met(self) -> int:
        if math.isnan(self.lo) and math.isnan(self.hi):
            return -1
        return int((math.isnan(self.lo) or self.value >= self.lo) and (math.isnan(self.hi) or self.value <= self.hi))

    def goal(self) -> str:
        if self.met < 0:
            return "none"
        if math.isnan(self.lo):
            return f"<= {self.hi:g}{self.unit}"
        if math.isnan(self.hi):
            return f">= {self.lo:g}{self.unit}"
        return f"{self.lo:g}..{self.hi:g}{self.unit}"

    def line(self) -> str:
        verdict = {1: "goal {}, met", 0: "goal {}, MISSED", -1: "a comparison, no goal"}[self.met].format(self.goal())
        return f"target {self.name}: {self.value:.3g}{self.unit} ({verdict})"


def write_targets(f: h5py.File, targets: list[Target]) -> None:
    """``/targets`` of ``f``, one row per target."""
    g = f.create_group("targets")
    strings = h5py.string_dtype()
    g.create_dataset("name", data=np.array([t.name for t in targets], dtype=strings))
    g.create_dataset("unit", data=np.array([t.unit for t in targets], dtype=strings))
    for key in ("value", "lo", "hi"):
        g.create_dataset(key, data=np.array([getattr(t, key) for t in targets], dtype=np.float64))
    g.create_dataset("met", data=np.array([t.met for t in targets], dtype=np.int8))
