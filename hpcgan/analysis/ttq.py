"""Time to quality at scale: how long each configuration would take to reach quality Q at N ranks.

For each configuration of the quality table (:mod:`hpcgan.analysis.quality`) and each of its seeds:

1. steps to Q (measured): the first step at which the seed's quality curve (its evaluations during
   training, then ``hpcgan eval`` of the final model) reaches Q, linearly interpolated between the
   two evaluations around the crossing (at Q by its first evaluation: that evaluation's step, an
   upper bound); a seed that never reaches Q counts as not reached;
2. step time at N ranks (modelled): T(N) = C + T_comm(N) - min(f T_comm(N), C)
   (:func:`hpcgan.analysis.costmodel.step_time`), with C the seed's measured non-communication time
   per step (weak scaling: the per-rank work stays as measured), T_comm(N) the algorithm's own
   communication model on the given network (alpha, B) with the payload per rank measured in the
   run, and f the overlap fraction: given, else measured from ``t_comm_hidden``, else 0;
3. time to Q at N = steps to Q x T(N); mean ± 95% Student-t CI over the seeds that reached Q.

Assumed: the steps to Q measured at the run's rank count hold at N (weak scaling keeps the per-rank
batch, so the global batch grows with N: usually optimistic for the steps), no contention.

Q per dataset: the given value, else the worst mean final quality among the configurations with a
quality curve (two or more evaluations per seed; pcwgan evaluates once, at its end), which each of
them reaches on average.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..netmodel import NetworkModel
from ..results.reader import RunResult
from . import costmodel as cm
from .quality import QualityRow, QualityTable
from .runs import overlap_fraction
from .scaling import Estimate

#: The rank counts the report answers for.
TTQ_RANKS = (64, 512, 2000)


@dataclass(frozen=True)
class Target:
    dataset: str
    metric: str
    value: float
    higher_is_better: bool

    def reached(self, q: np.ndarray) -> np.ndarray:
        return q >= self.value if self.higher_is_better else q <= self.value


@dataclass(frozen=True)
class TimeToQuality:
    """One configuration's answer: steps to Q over its seeds, and time to Q at each N."""

    row: QualityRow
    target: Target
    steps: Estimate                      # over the seeds that reached Q
    reached: int                         # seeds that reached Q
    overlap: float                       # f used
    overlap_source: str                  # "measured" / "given" / "assumed (no t_comm_hidden)"
    step_time: dict[int, Estimate]       # N -> modelled step time [s] over seeds
    time: dict[int, Estimate]            # N -> time to Q [s] over the seeds that reached Q


def quality_curve(run: RunResult, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``metric``: the evaluations during training, then the final model's
    ``hpcgan eval`` at its step when it is later than the last of them."""
    steps = np.asarray(run.eval.get("step", []), dtype=np.float64)
    values = np.asarray(run.eval.get(metric, np.full(steps.shape, np.nan)), dtype=np.float64)
    final = run.quality()
    if final.source == "hpcgan eval" and metric in final.values and (steps.size == 0 or final.step > steps[-1]):
        steps, values = np.append(steps, final.step), np.append(values, final.values[metric])
    keep = np.isfinite(values)
    return steps[keep], values[keep]


def steps_to(run: RunResult, target: Target) -> float:
    """The step at which ``run`` first reaches the target (interpolated; NaN: never)."""
    steps, q = quality_curve(run, target.metric)
    hit = np.flatnonzero(target.reached(q))
    if hit.size == 0:
        return math.nan
    i = int(hit[0])
    if i == 0 or q[i] == q[i - 1]:
        return float(steps[i])
    frac = (target.value - q[i - 1]) / (q[i] - q[i - 1])
    return float(steps[i - 1] + frac * (steps[i] - steps[i - 1]))


def choose_targets(table: QualityTable, given: float | None = None) -> dict[str, Target]:
    """Q per dataset: ``given``, else the worst mean final quality of the configurations with a
    curve (all of them when none has one)."""
    out = {}
    for data, metric in table.metrics.items():
        rows = [r for r in table.rows if r.dataset == data and math.isfinite(r.estimate.mean)]
        curved = [r for r in rows if all(len(quality_curve(run, metric.name)[0]) >= 2 for run in r.runs)]
        means = [r.estimate.mean for r in curved or rows]
        if not means:
            continue
        worst = min(means) if metric.higher_is_better else max(means)
        out[data] = Target(data, metric.name, worst if given is None else given, metric.higher_is_better)
    return out


def time_to_quality(table: QualityTable, net: NetworkModel, overlap: float | None = None,
                    target: float | None = None, ranks: tuple[int, ...] = TTQ_RANKS) -> list[TimeToQuality]:
    """One :class:`TimeToQuality` per configuration of ``table`` (module docstring)."""
    targets = choose_targets(table, target)
    out = []
    for row in table.rows:
        tgt = targets.get(row.dataset)
        if tgt is None or cm.algorithm(row.algo) is None:
            continue
        measured = overlap_fraction(row.runs)
        f, source = ((overlap, "given") if overlap is not None else
                     (measured, "measured (t_comm_hidden)") if measured is not None else
                     (0.0, "assumed 0 (no t_comm_hidden in these files)"))
        work = cm.workload(row.runs)
        steps = [steps_to(run, tgt) for run in row.runs]
        local = [cm.local_time(run) for run in row.runs]
        per_n, times = {}, {}
        for n in ranks:
            t = [cm.step_time(c, cm.comm_time(row.algo, net, n, work), f) for c in local]
            per_n[n] = Estimate.of(t)
            times[n] = Estimate.of([s * tn for s, tn in zip(steps, t) if math.isfinite(s)])
        reached = [s for s in steps if math.isfinite(s)]
        out.append(TimeToQuality(row, tgt, Estimate.of(reached), len(reached), f, source, per_n, times))
    return out


def duration(seconds: float) -> str:
    """Seconds as a readable duration: "42 s", "3.5 min", "2.1 h"."""
    if not math.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def fmt_time(e: Estimate) -> str:
    """Mean ± CI half-width as durations in the mean's unit."""
    if not math.isfinite(e.mean):
        return "not reached"
    text = duration(e.mean)
    if not math.isfinite(e.half_width):
        return text + " (1 seed)"
    unit = text.split()[-1]
    scale = {"s": 1, "min": 60, "h": 3600}[unit]
    return f"{text.rsplit(' ', 1)[0]} ± {e.half_width / scale:.2g} {unit}"
