"""Figures of a report, each as PNG and PDF (matplotlib, Agg backend: no display needed).

Every figure is drawn for one column of a paper (:data:`COLUMN_IN` inches wide, 8 pt text), in the
Okabe-Ito colour-blind-safe palette with a marker shape per configuration (readable in grey too),
with units on every axis, the machine and the threads per rank in its footer, and saved with a
tight bounding box (no clipped text). Configurations are named by
:func:`~hpcgan.analysis.runs.label` (algorithm, compressor, topology, ranks; ⚠ = oversubscribed).

* ``quality_<dataset>``: the metric against training steps, wall time [s] and bytes sent per rank
  [MB]: per configuration the mean over seeds with a 95% CI band (Student-t; one seed: no band), its
  final evaluation marked (mean ± CI, a larger marker); below, the final quality of each
  configuration, each seed a dot.
* ``scaling_<weak|strong>``: speedup and efficiency vs ranks with 95% CI bars, against ideal.
* ``phases_<weak|strong>``: per configuration the time per step split into phases (exposed
  communication included), and hidden communication (overlapped with compute) as a hatched bar.
* ``time_to_quality``: modelled time to reach Q at N ranks, mean ± 95% CI over seeds.
"""
from __future__ import annotations

import math
import re
import textwrap
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..metrics.names import base_name  # noqa: E402
from ..results.reader import RunResult  # noqa: E402
from .quality import QualityRow, QualityTable, saturation  # noqa: E402
from .scaling import PHASE_COLUMNS, Estimate, Row, setup_of  # noqa: E402
from .ttq import TimeToQuality  # noqa: E402

#: One column of a two-column paper [in].
COLUMN_IN = 3.5
#: Okabe & Ito (2008), distinguishable with every common colour-vision deficiency.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
         "legend.fontsize": 7, "axes.grid": True, "grid.alpha": 0.3, "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
         "pdf.fonttype": 42, "svg.fonttype": "none"}
#: Characters per footer line at column width.
WRAP = 70


@contextmanager
def _style():
    with plt.rc_context(STYLE):
        yield


def _look(i: int) -> dict:
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)]}


def wrap_label(name: str, width: int = 10) -> str:
    """A configuration label broken at its " · " separators into lines of about ``width`` characters."""
    lines: list[str] = []
    for part in name.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return "\n".join(lines)


def _err(values) -> list[float]:
    return [0.0 if not np.isfinite(e.half_width) else e.half_width for e in values]


def footer(runs: list[RunResult], machine: str, extra: str = "") -> str:
    """The machine and the threads/devices per rank of ``runs``, wrapped to the column."""
    setups = "; ".join(sorted({setup_of(r) for r in runs}))
    return "\n".join(textwrap.wrap(f"{machine}; {setups}" + (f". {extra}" if extra else ""), WRAP))


# -- quality -------------------------------------------------------------------------------------
def curves(run: RunResult, metric: str) -> dict[str, np.ndarray]:
    """A run's evaluations during training of ``metric``: step, wall [s], bytes per rank [B], value."""
    if metric not in run.eval:
        return {k: np.zeros(0) for k in ("step", "wall", "bytes", "value")}
    steps = run.eval["step"].astype(np.int64)
    sent, wall = at_steps(run, steps)
    return {"step": steps.astype(np.float64), "wall": wall, "bytes": sent / run.world_size,
            "value": np.asarray(run.eval[metric], dtype=np.float64)}


def at_steps(run: RunResult, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative bytes sent by all ranks, elapsed wall seconds) after ``steps`` steps."""
    sent = run.steps["bytes_sent"].astype(np.float64)
    sent[sent < 0] = 0
    cum = np.concatenate([[0.0], np.cumsum(sent.sum(axis=1))])
    elapsed = np.nanmax(run.steps["elapsed"], axis=1)
    done = np.clip(steps, 0, len(cum) - 1)
    wall = np.where(done > 0, elapsed[np.clip(done - 1, 0, None)], 0.0)
    return cum[done], wall


def mean_curve(row: QualityRow) -> dict[str, np.ndarray]:
    """Over the row's seeds, at the evaluation steps every seed has: mean step, wall and bytes, and
    the metric's mean and 95% CI half-width (NaN with one seed)."""
    per = [curves(run, row.metric) for run in row.runs]
    common = sorted(set.intersection(*(set(c["step"].tolist()) for c in per))) if per else []
    out = {k: np.zeros(len(common)) for k in ("step", "wall", "bytes", "value", "half")}
    for j, s in enumerate(common):
        at = [{k: c[k][np.flatnonzero(c["step"] == s)[0]] for k in c} for c in per]
        e = Estimate.of([a["value"] for a in at])
        out["step"][j], out["value"][j], out["half"][j] = s, e.mean, e.half_width
        out["wall"][j] = np.mean([a["wall"] for a in at])
        out["bytes"][j] = np.mean([a["bytes"] for a in at])
    return out


def final_point(row: QualityRow) -> dict[str, float]:
    """The final evaluation's mean step, wall, bytes per rank and value over seeds, and its CI."""
    steps = np.array([run.quality().step for run in row.runs])
    sent, wall = zip(*(at_steps(run, np.array([max(s, 0)])) for run, s in zip(row.runs, steps)))
    per_rank = [float(b[0]) / run.world_size for b, run in zip(sent, row.runs)]
    return {"step": float(steps.mean()), "wall": float(np.mean([w[0] for w in wall])), "bytes": float(np.mean(per_rank)),
            "value": row.estimate.mean, "half": 0.0 if not math.isfinite(row.estimate.half_width) else row.estimate.half_width}


def _y_limits(ax, metric: str, dataset_runs: list[RunResult], values: list[float]) -> None:
    """Start the axis at the metric's natural bound (0 for counts, fractions, KL and distances), never
    at the data's minimum; end fractions and mode counts at their ceiling."""
    finite = [v for v in values if math.isfinite(v)]
    top = max(finite, default=1.0)
    best, _ = saturation(metric, dataset_runs)  # the axis ends at the best value
    name = base_name(metric)
    if name in ("modes_covered", "hq_fraction") and math.isfinite(best):
        ax.set_ylim(0, best * 1.05)
    elif min(finite, default=0.0) >= 0:
        ax.set_ylim(0, top * 1.1 if top > 0 else 1.0)
    if name == "modes_covered":
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))


def plot_quality(table: QualityTable, dataset: str, path: Path, machine: str) -> list[Path]:
    """``quality_<dataset>`` (module docstring); returns the PNG and PDF paths."""
    metric = table.metrics[dataset]
    rows = [r for r in table.rows if r.dataset == dataset]
    runs = [run for r in rows for run in r.runs]
    unit = {"mode_kl": " [nats]", "hq_fraction": " [fraction]", "modes_covered": " [modes]"}.get(base_name(metric.name), "")
    ylabel = f"{metric.name}{unit}\n({metric.better})"
    with _style():
        fig, axes = plt.subplots(4, 1, figsize=(COLUMN_IN, 9.0), gridspec_kw={"height_ratios": [1, 1, 1, 1.1]},
                                 layout="constrained")
        ax_s, ax_t, ax_b, ax_f = axes
        values = []
        for i, row in enumerate(rows):
            look = _look(i)
            c, fin = mean_curve(row), final_point(row)
            values += list(c["value"] + np.nan_to_num(c["half"])) + [fin["value"] + fin["half"]]
            seeds = f"{row.estimate.n} seeds" if row.estimate.n > 1 else "1 seed, no band"
            for ax, key in ((ax_s, "step"), (ax_t, "wall"), (ax_b, "bytes")):
                x = c[key] / (1e6 if key == "bytes" else 1)
                ax.plot(x, c["value"], color=look["color"], marker=look["marker"], ms=3, lw=1.2,
                        label=f"{row.name} ({seeds})" if ax is ax_s else None)
                if row.estimate.n > 1:
                    ax.fill_between(x, c["value"] - c["half"], c["value"] + c["half"], color=look["color"], alpha=0.2, lw=0)
                fx = fin[key] / (1e6 if key == "bytes" else 1)
                ax.errorbar([fx], [fin["value"]], yerr=[fin["half"]], color=look["color"], marker=look["marker"], ms=7,
                            mec="k", mew=0.8, capsize=3, ls="none", zorder=5)
            seeds_y = [run.quality().values[metric.name] for run in row.runs]
            ax_f.errorbar([i], [row.estimate.mean], yerr=_err([row.estimate]), color=look["color"],
                          marker=look["marker"], ms=7, mec="k", mew=0.8, capsize=4, ls="none")
            ax_f.plot(np.full(len(seeds_y), i) + np.linspace(-0.15, 0.15, len(seeds_y)), seeds_y, ".", color="0.35", ms=4)
        ax_s.set_xlabel("training step")
        ax_t.set_xlabel("wall time since training started [s]")
        ax_b.set_xlabel("bytes sent per rank, cumulative [MB]")
        sent = [b for row in rows for b in mean_curve(row)["bytes"] if b > 0]
        if sent and max(sent) > 20 * min(sent):  # compressed and dense traffic differ by orders of magnitude
            ax_b.set_xscale("log")
            silent = [r.name for r in rows if not any(b > 0 for b in mean_curve(r)["bytes"])]
            ax_b.set_xlabel("bytes sent per rank, cumulative [MB, log scale]"
                            + (f"\n(not shown, sends nothing: {', '.join(silent)})" if silent else ""))
        ax_f.set_xticks(range(len(rows)), [wrap_label(r.name) for r in rows], fontsize=6.5)
        ax_f.set_xlim(-0.6, len(rows) - 0.4)
        ax_f.set_xlabel("configuration: final evaluation, mean ± 95% CI (dots: seeds)")
        for ax in axes:
            ax.set_ylabel(ylabel)
            _y_limits(ax, metric.name, runs, values)
        handles, labels = ax_s.get_legend_handles_labels()
        handles.append(matplotlib.lines.Line2D([], [], color="0.3", marker="o", ms=7, mec="k", ls="none"))
        labels.append("final evaluation (mean ± 95% CI); bands: 95% CI over seeds")
        fig.legend(handles, labels, loc="outside upper center", ncol=1, frameon=False,
                   title=f"{dataset}: {metric.name}", title_fontproperties={"size": 9, "weight": "bold"})
        note = table.notes.get(dataset, "")
        fig.text(0.5, 0, footer(runs, machine, note), ha="center", va="top", fontsize=6.5)
        shown = "; ".join(f"{r.name} ({r.estimate.n} seeds)" for r in rows)
        missing = [f"{run.path.name}: {why}" for run, why in table.missing if run.dataset == dataset]
        return _save(fig, path, {"Description": f"{dataset} {metric.name}; shown: {shown}"
                                 + (f"; not shown: {'; '.join(missing)}" if missing else "")})


# -- scaling and phases --------------------------------------------------------------------------
def plot_scaling(rows: list[Row], scaling: str, path: Path, machine: str) -> list[Path]:
    ranks_all = sorted({r.ranks for r in rows})
    with _style():
        fig, (ax_s, ax_e) = plt.subplots(2, 1, figsize=(COLUMN_IN, 5.2), sharex=True, layout="constrained")
        methods = sorted({r.method for r in rows})
        for i, m in enumerate(methods):
            mine = [r for r in rows if r.method == m and r.speedup is not None]
            if not mine:
                continue
            n, look = [r.ranks for r in mine], _look(i)
            name = m + (" ⚠" if any(r.oversubscribed for r in mine) else "")
            ax_s.errorbar(n, [r.speedup.mean for r in mine], yerr=_err(r.speedup for r in mine), capsize=3, label=name,
                          ms=4, **look)
            ax_e.errorbar(n, [r.efficiency.mean for r in mine], yerr=_err(r.efficiency for r in mine), capsize=3,
                          ms=4, **look)
        ax_s.plot(ranks_all, ranks_all, "k--", lw=0.8, label="ideal")
        ax_e.axhline(1.0, color="k", linestyle="--", lw=0.8)
        ax_s.set_ylabel("speedup [x]")
        ax_e.set_ylabel("parallel efficiency [fraction]")
        ax_e.set_ylim(bottom=0)
        ax_s.set_ylim(bottom=0)
        ax_e.set_xscale("log", base=2)
        ax_e.set_xticks(ranks_all, [str(n) for n in ranks_all])
        ax_e.set_xlabel("ranks")
        ax_s.legend(loc="upper left")
        ax_s.set_title(f"{_study(scaling)}: mean ± 95% CI over repeats")
        runs = [run for r in rows for run in r.runs]
        fig.text(0.5, 0, footer(runs, machine, "⚠ = oversubscribed ranks" if any(r.oversubscribed for r in rows)
                                     else ""), ha="center", va="top", fontsize=6.5)
        return _save(fig, path)


def plot_phases(rows: list[Row], scaling: str, path: Path, machine: str) -> list[Path]:
    labels = [wrap_label(r.name) for r in rows]
    with _style():
        fig, ax = plt.subplots(figsize=(COLUMN_IN, 3.4), layout="constrained")
        x = np.arange(len(rows))
        bottom = np.zeros(len(rows))
        for i, col in enumerate(PHASE_COLUMNS):
            ms = np.array([1e3 * r.phases()[col] for r in rows])
            name = {"t_comm": "comm (exposed)", "t_net_emulated": "net. emulated"}.get(col, col.removeprefix("t_"))
            ax.bar(x, ms, 0.6, bottom=bottom, label=name, color=PALETTE[i])
            bottom += ms
        other = np.array([1e3 * r.step_time.mean for r in rows]) - bottom
        ax.bar(x, np.clip(other, 0, None), 0.6, bottom=bottom, label="other (data, waits)", color="0.8")
        hidden = np.array([1e3 * r.comm_split()[1] for r in rows])
        if hidden.any():
            top = np.maximum(bottom, 1e3 * np.array([r.step_time.mean for r in rows]))
            ax.bar(x, hidden, 0.6, bottom=top, fill=False, hatch="///", edgecolor=PALETTE[2],
                   label="comm hidden behind compute\n(not in the step time)")
        ax.set_xticks(x, labels, fontsize=6.5)
        ax.set_ylabel("time per step [ms]")
        fig.legend(loc="outside upper center", ncol=3, frameon=False, title="\n".join(textwrap.wrap(
            f"{_study(scaling)}: phases per step (median over timed steps, mean over ranks and repeats)", 60)))
        runs = [run for r in rows for run in r.runs]
        fig.text(0.5, 0, footer(runs, machine), ha="center", va="top", fontsize=6.5)
        return _save(fig, path)


# -- time to quality -----------------------------------------------------------------------------
def plot_time_to_quality(answers: list[TimeToQuality], path: Path, machine: str, network: str) -> list[Path]:
    ranks = sorted({n for a in answers for n in a.time})
    with _style():
        fig, ax = plt.subplots(figsize=(COLUMN_IN, 3.0), layout="constrained")
        for i, a in enumerate(answers):
            t = [a.time[n] for n in ranks]
            if not any(math.isfinite(e.mean) for e in t):
                continue
            ax.errorbar(np.array(ranks) * (1 + 0.04 * (i - len(answers) / 2)), [e.mean for e in t], yerr=_err(t),
                        capsize=3, ms=4, label=f"{a.row.name} ({a.reached}/{len(a.row.runs)} seeds)", **_look(i))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ranks, [str(n) for n in ranks])
        ax.minorticks_off()
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("ranks N (modelled)")
        ax.set_ylabel("time to reach Q [s]")
        tgt = answers[0].target if answers else None
        title = "" if tgt is None else "\n".join(textwrap.wrap(
            f"time to {tgt.metric} {'≥' if tgt.higher_is_better else '≤'} {tgt.value:.3g} ({tgt.dataset}), "
            "mean ± 95% CI over seeds", 55))
        fig.legend(loc="outside upper center", frameon=False, title=title)
        runs = [run for a in answers for run in a.row.runs]
        never = [a.row.name for a in answers if not a.reached]
        fig.text(0.5, 0, footer(runs, machine, f"Network: {network}. Steps to Q and compute time measured; "
                                "step time at N modelled." + (f" Q not reached by: {', '.join(never)}." if never else "")),
                 ha="center", va="top", fontsize=6.5)
        return _save(fig, path)


def _study(scaling: str) -> str:
    return f"{scaling} scaling" if scaling in ("weak", "strong") else "runs outside a scaling study"


def slug(text: str) -> str:
    """A file-name-safe form of a dataset name, without its folder: "mog8:0.1" -> "mog8_0.1",
    "h5:/data/cifar10.h5" -> "cifar10.h5"."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", text.rsplit("/", 1)[-1]).strip("_")


def _save(fig, path: Path, metadata: dict[str, str] | None = None) -> list[Path]:
    """Write ``path`` (PNG, ``metadata`` in its text chunks) and the same figure as PDF, with a tight
    bounding box so no label, legend or footer is cut off."""
    png, pdf = path.with_suffix(".png"), path.with_suffix(".pdf")
    fig.savefig(png, dpi=200, metadata=metadata, bbox_inches="tight", pad_inches=0.05)
    fig.savefig(pdf, metadata={"Subject": (metadata or {}).get("Description", "")}, bbox_inches="tight",
                pad_inches=0.05)
    plt.close(fig)
    return [png, pdf]
