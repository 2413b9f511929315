"""Scaling tables: runs of a sweep grouped by (scaling, algorithm, ranks), with confidence intervals.

Per run: T = step time (median over timed steps of the slowest rank's wall time) and throughput
X = samples consumed per step / T [samples/s], counted by the algorithm in every step
(/steps/real_samples and fake_samples summed over ranks: cwgan and pcwgan use n_critic batches of
real images per step, the simultaneous-gradient algorithms one). Against the 1-rank run of the same
repeat (same seed) T1:

    weak   (per-rank batch constant):  efficiency E = T1 / TN,        speedup S = N T1 / TN
    strong (global batch constant):    efficiency E = T1 / (N TN),    speedup S = T1 / TN

(for weak scaling S is the throughput ratio X_N / X_1). Each quantity is averaged over the R
repeats of a configuration with a 95% Student-t confidence interval

    mean +- t_{0.975, R-1} * s / sqrt(R)      (s = sample standard deviation; none when R = 1).

A repeat without a 1-rank partner is compared with the mean 1-rank time. Runs of one algorithm
with different compressors or topologies are different configurations (:func:`~hpcgan.analysis.runs.method`).

Each row carries the warnings a reader needs before trusting it (:func:`row_flags`): efficiency
above :data:`MAX_EFFICIENCY`, step times that vary by more than :data:`MAX_CV` within a run or
between repeats, a 1-rank baseline that ran with other threads per rank or devices than the
N-rank runs, and ranks that shared cores or GPUs (oversubscribed; all from each file's ``ranks_json``).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ..results.reader import RunResult
from .runs import MARK, bytes_per_rank_step, comm_split, method, oversubscription

PHASE_COLUMNS = ("t_compute", "t_compress", "t_comm", "t_update", "t_net_emulated")
#: Efficiency above this is flagged as suspect (superlinear scaling is rare; a slow baseline is not).
MAX_EFFICIENCY = 1.05
#: Coefficient of variation of step times above this is flagged as suspect.
MAX_CV = 0.20


@dataclass(frozen=True)
class Estimate:
    mean: float
    half_width: float   # of the 95% confidence interval; NaN with one repeat
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Estimate":
        v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
        if v.size == 0:
            return cls(math.nan, math.nan, 0)
        if v.size == 1:
            return cls(float(v[0]), math.nan, 1)
        half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
        return cls(float(v.mean()), float(half), int(v.size))

    def fmt(self, scale: float = 1.0, digits: int = 3) -> str:
        if not math.isfinite(self.mean):
            return "-"
        text = f"{self.mean * scale:.{digits}g}"
        return text + (f" ± {self.half_width * scale:.2g}" if math.isfinite(self.half_width) else "")


@dataclass
class Row:
    """One (scaling, algorithm, ranks) configuration over its repeats."""

    scaling: str
    algo: str
    ranks: int
    runs: list[RunResult]
    method: str = ""                             # algorithm, compressor, topology (runs.method)
    step_time: Estimate = field(init=False)
    throughput: Estimate = field(init=False)     # real samples / s
    generated: Estimate = field(init=False)      # generator samples / s
    speedup: Estimate | None = None
    efficiency: Estimate | None = None
    flags: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.step_time = Estimate.of([r.step_time() for r in self.runs])
        self.throughput = Estimate.of([r.throughput("real") for r in self.runs])
        self.generated = Estimate.of([r.throughput("fake") for r in self.runs])

    def step_cv(self) -> float:
        """The largest within-run CV of step times over the repeats."""
        return max((r.step_cv() for r in self.runs), default=math.nan)

    def repeat_cv(self) -> float:
        """CV of the step time between repeats (NaN with one repeat)."""
        t = np.array([r.step_time() for r in self.runs])
        return float(t.std(ddof=1) / t.mean()) if t.size > 1 else math.nan

    def setup(self) -> str:
        """Threads per rank and devices of the runs, e.g. "1 thread/rank, cpu"."""
        return "; ".join(sorted({setup_of(r) for r in self.runs}))

    @property
    def local_batch(self) -> int:
        return int(self.runs[0].attrs["local_batch"])

    @property
    def global_batch(self) -> int:
        return int(self.runs[0].attrs["global_batch"])

    def phases(self) -> dict[str, float]:
        """Mean over repeats of each run's phase medians [s]."""
        per = [r.phase_times() for r in self.runs]
        return {c: float(np.mean([p[c] for p in per])) for c in PHASE_COLUMNS}

    def bytes_per_step(self) -> float:
        return float(np.mean([r.bytes_per_step() for r in self.runs]))

    def bytes_per_rank_step(self) -> float:
        return float(np.mean([bytes_per_rank_step(r) for r in self.runs]))

    def comm_split(self) -> tuple[float, float]:
        """(exposed, hidden) communication per step [s], mean over repeats."""
        e, h = zip(*(comm_split(r) for r in self.runs))
        return float(np.mean(e)), float(np.mean(h))

    @property
    def oversubscribed(self) -> str | None:
        return next(filter(None, map(oversubscription, self.runs)), None)

    @property
    def name(self) -> str:
        """Algorithm, compressor, topology and ranks, with ⚠ when oversubscribed."""
        return f"{self.method or self.algo} · {self.ranks} rank{'s' if self.ranks != 1 else ''}" + \
            (f" {MARK}" if self.oversubscribed else "")


def setup_of(run: RunResult) -> str:
    """Threads per rank and devices a run used (from ``ranks_json``)."""
    if not run.ranks:
        return "threads and devices not recorded"
    threads = sorted({int(r["threads"]) for r in run.ranks})
    devices = sorted({str(r["device"]).split(":")[0] for r in run.ranks})
    return f"{'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''}/rank, {'/'.join(devices)}"


def row_flags(row: Row, baseline: Row | None) -> list[str]:
    """Why a row's numbers may not mean what they seem (empty: none found)."""
    out = []
    if row.oversubscribed:
        out.append(f"oversubscribed: {row.oversubscribed}; its step times include waits for a core or GPU")
    if row.efficiency is not None and row.efficiency.mean > MAX_EFFICIENCY:
        out.append(f"efficiency {row.efficiency.mean:.2f} > {MAX_EFFICIENCY}: suspect (a slow or noisy 1-rank baseline?)")
    if row.step_cv() > MAX_CV:
        out.append(f"step times vary within a run (CV {100 * row.step_cv():.0f}% > {100 * MAX_CV:.0f}%): suspect "
                   "(a shared or throttled machine?)")
    if row.repeat_cv() > MAX_CV:
        out.append(f"step time varies between repeats (CV {100 * row.repeat_cv():.0f}% > {100 * MAX_CV:.0f}%): suspect")
    if baseline is not None and baseline is not row and baseline.setup() != row.setup():
        out.append(f"unfair baseline: the 1-rank runs used {baseline.setup()}, these {row.setup()} "
                   "(hpcgan sweep --threads T fixes the threads of every run)")
    return out


def repeat_of(run: RunResult) -> int:
    """Pairs repeats across rank counts: repeat r of a sweep runs with seed = base seed + r."""
    return int(run.config.get("run", {}).get("seed", 0))


def scaling_rows(runs: list[RunResult]) -> list[Row]:
    """Rows sorted by (scaling, algorithm, method, ranks); finished runs only."""
    groups: dict[tuple[str, str, str, int], list[RunResult]] = defaultdict(list)
    for r in runs:
        if r.finished:
            groups[(str(r.attrs["scaling"]), str(r.attrs["algorithm"]), method(r), r.world_size)].append(r)
    rows = [Row(s, a, n, sorted(g, key=repeat_of), m) for (s, a, m, n), g in sorted(groups.items())]
    base = {(r.scaling, r.method): r for r in rows if r.ranks == 1 and r.scaling in ("weak", "strong")}
    for row in rows:
        one = base.get((row.scaling, row.method))
        if one is None:
            row.flags = row_flags(row, None)
            continue
        t1_by_seed = {repeat_of(r): r.step_time() for r in one.runs}
        t1_mean = one.step_time.mean
        speed, eff = [], []
        for r in row.runs:
            t1, tn, n = t1_by_seed.get(repeat_of(r), t1_mean), r.step_time(), row.ranks
            if row.scaling == "strong":
                speed.append(t1 / tn)
                eff.append(t1 / (n * tn))
            else:
                speed.append(n * t1 / tn)
                eff.append(t1 / tn)
        row.speedup, row.efficiency = Estimate.of(speed), Estimate.of(eff)
        row.flags = row_flags(row, one)
    return rows
