"""PNG figures of a scaling report (matplotlib, Agg backend: no display needed).

* ``scaling_<weak|strong>.png``: speedup and efficiency vs ranks with 95% CI bars, against ideal
  (speedup = N, efficiency = 1).
* ``phases_<weak|strong>.png``: stacked per-phase time per step, one bar per (algorithm, ranks).
* ``quality.png``: quality metric vs cumulative bytes sent (all ranks) and vs wall time, per run.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..results.reader import RunResult  # noqa: E402
from .scaling import PHASE_COLUMNS, Row  # noqa: E402


def _err(values) -> list[float]:
    return [0.0 if not np.isfinite(e.half_width) else e.half_width for e in values]


def plot_scaling(rows: list[Row], scaling: str, path: Path, machine: str) -> Path:
    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(10, 4))
    ranks_all = sorted({r.ranks for r in rows})
    for algo in sorted({r.algo for r in rows}):
        mine = [r for r in rows if r.algo == algo and r.speedup is not None]
        if not mine:
            continue
        n = [r.ranks for r in mine]
        ax_s.errorbar(n, [r.speedup.mean for r in mine], yerr=_err(r.speedup for r in mine), marker="o",
                      capsize=3, label=algo)
        ax_e.errorbar(n, [r.efficiency.mean for r in mine], yerr=_err(r.efficiency for r in mine),
                      marker="o", capsize=3, label=algo)
    ax_s.plot(ranks_all, ranks_all, "k--", label="ideal")
    ax_e.axhline(1.0, color="k", linestyle="--", label="ideal")
    for ax, name in ((ax_s, "speedup"), (ax_e, "efficiency")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks_all, [str(n) for n in ranks_all])
        ax.set_xlabel("ranks")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{scaling} scaling — {machine}", fontsize=9)
    return _save(fig, path)


def plot_phases(rows: list[Row], scaling: str, path: Path, machine: str) -> Path:
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(rows) + 2), 4))
    labels = [f"{r.algo}\nN={r.ranks}" for r in rows]
    bottom = np.zeros(len(rows))
    for col in PHASE_COLUMNS:
        ms = np.array([1e3 * r.phases()[col] for r in rows])
        ax.bar(labels, ms, bottom=bottom, label=col.removeprefix("t_"))
        bottom += ms
    other = np.array([1e3 * r.step_time.mean for r in rows]) - bottom
    ax.bar(labels, np.clip(other, 0, None), bottom=bottom, label="other (data, imbalance)", color="lightgrey")
    ax.set_ylabel("time per step [ms]")
    ax.legend(fontsize=8)
    ax.set_title(f"{scaling} scaling: phase breakdown — {machine}", fontsize=9)
    return _save(fig, path)


def quality_curve(run: RunResult, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cumulative bytes sent by all ranks, wall seconds, metric) at each evaluation of ``run``."""
    steps = run.eval["step"].astype(np.int64)
    sent = run.steps["bytes_sent"].astype(np.float64)
    sent[sent < 0] = 0
    cum = np.concatenate([[0.0], np.cumsum(sent.sum(axis=1))])
    elapsed = np.nanmax(run.steps["elapsed"], axis=1)
    done = np.clip(steps, 0, len(cum) - 1)
    wall = np.where(done > 0, elapsed[np.clip(done - 1, 0, None)], 0.0)
    return cum[done], wall, run.eval[metric]


def plot_quality(runs: list[RunResult], metric: str, path: Path, machine: str) -> Path:
    fig, (ax_b, ax_t) = plt.subplots(1, 2, figsize=(10, 4))
    for run in runs:
        if metric not in run.eval:
            continue
        b, t, q = quality_curve(run, metric)
        label = f"{run.attrs['algorithm']} {run.attrs['scaling']} N={run.world_size}"
        ax_b.plot(b / 1e6, q, marker="o", label=label)
        ax_t.plot(t, q, marker="o", label=label)
    ax_b.set_xlabel("bytes sent, all ranks [MB]")
    ax_t.set_xlabel("wall time [s]")
    for ax in (ax_b, ax_t):
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    ax_t.legend(fontsize=7)
    fig.suptitle(f"quality vs communication and time — {machine}", fontsize=9)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
