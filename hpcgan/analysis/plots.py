"""PNG figures of a scaling report (matplotlib, Agg backend: no display needed).

* ``scaling_<weak|strong>.png``: speedup and efficiency vs ranks with 95% CI bars, against ideal
  (speedup = N, efficiency = 1).
* ``phases_<weak|strong>.png``: stacked per-phase time per step, one bar per (algorithm, ranks).
* ``quality.png``: one row of panels per dataset, on its one metric: final quality per
  configuration (mean ± 95% CI over seeds, each seed a dot), and every run's quality vs cumulative
  bytes sent (all ranks) and vs wall time (its evaluations during training, the final model's
  ``hpcgan eval`` as a star). Runs without the metric are named under the figure.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..results.reader import RunResult  # noqa: E402
from .quality import QualityTable  # noqa: E402
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
    """(cumulative bytes sent by all ranks, wall seconds, metric) at each evaluation during training
    of ``run`` that has ``metric``."""
    if metric not in run.eval:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return _at_steps(run, run.eval["step"].astype(np.int64)) + (run.eval[metric],)


def _at_steps(run: RunResult, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative bytes sent by all ranks, elapsed wall seconds) after ``steps`` steps."""
    sent = run.steps["bytes_sent"].astype(np.float64)
    sent[sent < 0] = 0
    cum = np.concatenate([[0.0], np.cumsum(sent.sum(axis=1))])
    elapsed = np.nanmax(run.steps["elapsed"], axis=1)
    done = np.clip(steps, 0, len(cum) - 1)
    wall = np.where(done > 0, elapsed[np.clip(done - 1, 0, None)], 0.0)
    return cum[done], wall


def plot_quality(table: QualityTable, path: Path, machine: str) -> Path:
    datasets = sorted({r.dataset for r in table.rows})
    fig, axes = plt.subplots(len(datasets), 3, figsize=(15, 4 * len(datasets)), squeeze=False)
    for (ax_q, ax_b, ax_t), data in zip(axes, datasets):
        metric = table.metrics[data]
        rows = [r for r in table.rows if r.dataset == data]
        x = np.arange(len(rows))
        ax_q.errorbar(x, [r.estimate.mean for r in rows], yerr=_err(r.estimate for r in rows), fmt="o", capsize=4,
                      color="k", label="mean ± 95% CI")
        for i, r in enumerate(rows):
            ax_q.plot([i] * len(r.runs), [run.quality().values[metric.name] for run in r.runs], ".", alpha=0.6)
        ax_q.set_xticks(x, [f"{r.algo}\n{r.scaling} N={r.ranks}\n{r.estimate.n} seed(s)" for r in rows], fontsize=7)
        ax_q.set_title(f"{data}: final {metric.name} ({metric.better})", fontsize=9)
        ax_q.legend(fontsize=7)
        for r in rows:
            for run in r.runs:
                label = f"{r.algo} {r.scaling} N={r.ranks} seed {run.config.get('run', {}).get('seed', 0)}"
                b, t, q = quality_curve(run, metric.name)
                (line,) = ax_t.plot(t, q, marker="o", label=label)
                ax_b.plot(b / 1e6, q, marker="o", color=line.get_color())
                final = run.quality()
                if final.source == "hpcgan eval":
                    fb, ft = _at_steps(run, np.array([final.step]))
                    ax_b.plot(fb / 1e6, final.values[metric.name], "*", ms=12, color=line.get_color())
                    ax_t.plot(ft, final.values[metric.name], "*", ms=12, color=line.get_color())
        ax_b.set_xlabel("bytes sent, all ranks [MB]")
        ax_t.set_xlabel("wall time [s]")
        for ax in (ax_q, ax_b, ax_t):
            ax.set_ylabel(metric.name)
            ax.grid(alpha=0.3)
        ax_t.legend(fontsize=6, title="★ = hpcgan eval of the final model", title_fontsize=6)
    missing = [f"{run.path.name}: {why}" for run, why in table.missing]
    note = ("not shown: " + "; ".join(missing)) if missing else "every finished run is shown"
    fig.suptitle("\n".join([f"quality — {machine}", *textwrap.wrap(note, 200)[:5]]), fontsize=8)
    shown = "; ".join(f"{r.dataset}: {r.algo} {r.scaling} N={r.ranks} ({r.estimate.n} seeds)" for r in table.rows)
    return _save(fig, path, {"Description": f"shown: {shown}. {note}"})


def _save(fig, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the PNG; ``metadata`` goes into its text chunks (what the figure shows, for tools and tests)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=metadata)
    plt.close(fig)
    return path
