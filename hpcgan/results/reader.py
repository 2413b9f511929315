"""Reading results files back: one :class:`RunResult` per HDF5 file (used by summary and report)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .schema import SCHEMA


def slowest_median(values: np.ndarray) -> float:
    """The slowest rank's median over steps of a (steps, ranks) array."""
    return float(np.nanmax(np.nanmedian(values, axis=0)))


@dataclass
class RunResult:
    path: Path
    attrs: dict[str, Any]
    config: dict[str, Any]
    steps: dict[str, np.ndarray]        # column -> (n_steps, world_size)
    eval: dict[str, np.ndarray]         # metric -> (n_evals,), with "step"
    series: dict[str, dict[str, np.ndarray]]

    @property
    def finished(self) -> bool:
        return "finished_at" in self.attrs

    @property
    def world_size(self) -> int:
        return int(self.attrs["world_size"])

    @property
    def n_steps(self) -> int:
        return int(self.steps["step"].shape[0])

    def timed(self, column: str) -> np.ndarray:
        """A step column with the warm-up steps removed."""
        warm = int(self.attrs.get("warmup_steps", 0))
        data = self.steps[column]
        return data[warm:] if data.shape[0] > warm else data

    def step_time(self) -> float:
        """The slowest rank's median iteration time over timed steps [s].

        Per rank first, then the slowest: a per-step maximum over ranks would add the skew of the
        ranks' step boundaries (a rank leaves a ring allreduce before its peers do) to every step."""
        return slowest_median(self.timed("wall"))

    def phase_times(self) -> dict[str, float]:
        """Median over timed steps of the per-step mean over ranks, per phase [s]."""
        return {c: float(np.nanmedian(np.nanmean(self.timed(c), axis=1)))
                for c in ("t_compute", "t_compress", "t_comm", "t_update", "t_net_emulated")}

    def bytes_per_step(self) -> float:
        """Mean over steps of the bytes all ranks together handed to the transport."""
        b = self.steps["bytes_sent"].astype(np.float64)
        b[b < 0] = np.nan
        return float(np.nanmean(np.nansum(b, axis=1))) if b.size else 0.0

    def total_bytes(self) -> int:
        b = self.steps["bytes_sent"]
        return int(b[b >= 0].sum())

    def final_eval(self) -> dict[str, float]:
        return {k: float(v[-1]) for k, v in self.eval.items() if k != "step" and len(v)}


def load_run(path: str | Path) -> RunResult:
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        steps = {k: ds[()] for k, ds in f["steps"].items()}
        series = {g: {k: ds[()] for k, ds in f[g].items()} for g in SCHEMA.series if g in f}
    config = json.loads(attrs.get("config_json", "{}"))
    return RunResult(Path(path), attrs, config, steps, series.get("eval", {}), series)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Results files named directly or found (recursively) in the folders named, sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        found += sorted(p.rglob("*.h5")) if p.is_dir() else [p]
    return found
