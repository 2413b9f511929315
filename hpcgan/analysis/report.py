"""``hpcgan report results/<sweep> --out reports/<sweep>``: report.md and PNG plots of a sweep.

Sections: scaling tables per configuration and rank count (step time, throughput in samples
consumed, speedup, efficiency with 95% CIs over repeats, the spread of step times, and warnings:
see :mod:`hpcgan.analysis.scaling`), phase breakdown with exposed and hidden communication and
bytes per rank per step, final quality on one metric per dataset with its spread over seeds
(:mod:`hpcgan.analysis.quality`; a saturated metric gives way to a finer one), time to quality at
64, 512 and 2000 ranks (:mod:`hpcgan.analysis.ttq`), the cost model's predicted vs measured step
times (:mod:`hpcgan.analysis.costmodel`), and its projection to many ranks on a given network.
Configurations are named by algorithm, compressor, topology and ranks; ⚠ marks every row whose
ranks shared cores or GPUs. Every table and figure names the machine the runs ran on.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from ..netmodel import NetworkModel
from . import costmodel as cm
from .plots import plot_phases, plot_quality, plot_scaling, plot_time_to_quality, slug
from ..errors import UsageError
from ..log import Progress, get_logger
from ..results.reader import RunResult, find_runs
from .quality import QualityTable, quality_table
from .scaling import Estimate, Row, scaling_rows
from .runs import overlap_fraction
from .ttq import TimeToQuality, fmt_time, time_to_quality
from .summary import is_results_file, read_runs, skipped_lines

PROJECTION_RANKS = [1, 2, 4, 8, 64, 512, 2000]
TARGET_ERROR = 0.15
#: Efficiency CIs at most this wide (half-width) tell methods 0.1 apart.
TARGET_HALF_WIDTH = 0.05
#: Benchmark files of a sweep folder that the cost model reads (see hpcgan.sweep).
BENCH_FILES = ("comm_n*.hdf5", "sharing_n*.hdf5")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(r) + " |" for r in rows], ""]


def _ms(x: float) -> str:
    return f"{1e3 * x:.3g}" if math.isfinite(x) else "-"


def load_runs(paths: list[str | Path]) -> tuple[list[RunResult], list[tuple[Path, str]], list[Path]]:
    """(runs, unreadable files with why, other HDF5 files: benchmark output) under ``paths``."""
    files = find_runs(paths)
    progress, kinds = Progress("loading runs", len(files), "files"), {}
    for i, f in enumerate(files):
        kinds[f] = is_results_file(f)
        progress.update(i + 1)
    progress.close()
    runs, unreadable = read_runs([f for f, kind in kinds.items() if kind is not False])
    return runs, unreadable, [f for f, kind in kinds.items() if kind is False]


def scaling_section(scaling: str, rows: list[Row]) -> list[str]:
    titles = {"weak": "Weak scaling (per-rank batch constant; efficiency = T1/TN, speedup = N·T1/TN)",
              "strong": "Strong scaling (global batch constant; speedup = T1/TN, efficiency = T1/(N·TN))"}
    out = [f"## {titles.get(scaling, 'Runs outside a scaling study (no speedup)')}", ""]
    out += ["Throughput: samples consumed per second by all ranks (real images; generator samples), as each "
            "step counts them (cwgan/pcwgan: n_critic batches of real images per step). CV: coefficient of "
            "variation of step times within a run (worst repeat) / between repeats. ⚠: see the warnings below "
            "the tables.", ""]
    warnings = []
    for method in sorted({r.method for r in rows}):
        mine = [r for r in rows if r.method == method]
        out += [f"### {method}", ""]
        out += _table(["ranks", "local batch", "global batch", "repeats", "setup", "step time [ms]", "CV",
                       "real samples/s", "generated/s", "speedup", "efficiency"],
                      [[str(r.ranks), str(r.local_batch), str(r.global_batch), str(len(r.runs)), r.setup(),
                        r.step_time.fmt(1e3), f"{_pct(r.step_cv())} / {_pct(r.repeat_cv())}",
                        r.throughput.fmt(digits=4), r.generated.fmt(digits=4),
                        r.speedup.fmt() if r.speedup else "- (no 1-rank run)",
                        (r.efficiency.fmt() if r.efficiency else "-") + (" ⚠" if r.flags else "")] for r in mine])
        warnings += [f"- ⚠ {r.name.removesuffix(' ⚠')}: {flag}" for r in mine for flag in r.flags]
    if warnings:
        out += ["Warnings:", "", *warnings, ""]
    widths = [r.efficiency.half_width for r in rows if r.efficiency is not None and r.ranks > 1]
    if widths:
        worst = max(widths)
        out += [(f"Efficiency 95% CI half-width: at most {worst:.3f}" if math.isfinite(worst) else
                 "Efficiency CIs need >= 2 repeats") + f" (target ≤ {TARGET_HALF_WIDTH} to rank the methods).", ""]
    out += ["Phase breakdown (median over timed steps, mean over ranks and repeats). Exposed communication: the "
            "step waited for it (`t_comm`); hidden: it ran behind compute (`t_comm_hidden`, results schema v4; "
            "0 in older files) and is not part of the step time. Bytes: what one rank hands to the transport per "
            "step (mean over ranks), comparable across rank counts.", ""]
    body = []
    for r in rows:
        ph, (_, hidden) = r.phases(), r.comm_split()
        body.append([r.name, *(_ms(ph[c]) for c in ("t_compute", "t_compress", "t_comm")), _ms(hidden),
                     *(_ms(ph[c]) for c in ("t_update", "t_net_emulated")), f"{r.bytes_per_rank_step() / 1e3:.1f}"])
    out += _table(["configuration", "compute [ms]", "compress [ms]", "comm exposed [ms]", "comm hidden [ms]",
                   "update [ms]", "net emul. [ms]", "KB/rank/step"], body)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if math.isfinite(x) else "-"


def quality_section(table: QualityTable) -> list[str]:
    out = ["## Quality", ""]
    if not table.metrics:
        return out + ["No run has a quality metric (see below).", ""] + _missing(table)
    for data, metric in sorted(table.metrics.items()):
        rows = [r for r in table.rows if r.dataset == data]
        out += [f"### {data}: {metric.name} ({metric.better})", ""]
        if data in table.notes:
            out += [f"**{table.notes[data]}**", ""]
        out += [f"{metric.doc}. Mean ± 95% CI over seeds (runs of the same configuration); the final model's "
                "`hpcgan eval` where it ran, else the last evaluation during training. Updates per model (per seed): "
                "generator (G) and critic (D) updates each model got (pcwgan: each label's generator, min-max over "
                "labels); rank-seconds: training time summed over ranks.", ""]
        coarse = table.saturated.get(data)
        out += _table(["configuration", "seeds", metric.name, "per seed", *([coarse] if coarse else []),
                       "updates per model", "rank-seconds", "evaluation"],
                      [[r.name, str(r.estimate.n),
                        r.estimate.fmt() + ("" if r.estimate.n > 1 else " (1 seed: no spread)"),
                        ", ".join(f"{run.quality().values[metric.name]:.4g}" for run in r.runs),
                        *([Estimate.of([run.quality().values.get(coarse, math.nan) for run in r.runs]).fmt()]
                          if coarse else []),
                        ", ".join(run.updates_text() for run in r.runs),
                        ", ".join(f"{run.rank_seconds():.0f}" for run in r.runs), r.evaluations]
                       for r in rows])
        over = [f"- ⚠ {r.name.removesuffix(' ⚠')}: oversubscribed ({r.oversubscribed}); its wall times include "
                "waits for a core or GPU" for r in rows if r.oversubscribed]
        out += over + ([""] if over else [])
    return out + _missing(table)


def ttq_section(answers: list[TimeToQuality], net: NetworkModel, target_given: bool = False) -> list[str]:
    """How long each configuration takes to reach Q at N ranks, and which inputs are measured."""
    out = ["## Time to quality at scale", ""]
    if not answers:
        return out + ["No configuration with a quality curve and a known algorithm.", ""]
    ranks = sorted(answers[0].time)
    for data in sorted({a.target.dataset for a in answers}):
        mine = [a for a in answers if a.target.dataset == data]
        t = mine[0].target
        sign = "≥" if t.higher_is_better else "≤"
        out += [f"### {data}: time to {t.metric} {sign} {t.value:.4g}", "",
                f"Q = {t.value:.4g}" + (" (`--target`)." if target_given else
                                        ": the worst mean final quality of the configurations evaluated during training (`--target` sets another)."),
                ""]
        out += _table(["configuration", "seeds at Q", "steps to Q", "step time here [ms]", "overlap f",
                       *[f"T_step at N={n} [ms]" for n in ranks], *[f"time to Q at N={n}" for n in ranks]],
                      [[a.row.name, f"{a.reached}/{len(a.row.runs)}", a.steps.fmt(digits=4),
                        f"{1e3 * sum(r.step_time() for r in a.row.runs) / len(a.row.runs):.3g}",
                        f"{a.overlap:.2f}", *[a.step_time[n].fmt(1e3) for n in ranks], *[fmt_time(a.time[n]) for n in ranks]]
                       for a in mine])
    sources = sorted({a.overlap_source for a in answers})
    out += ["Inputs:", "",
            "- measured on this machine: steps to Q per seed (from the quality curve: evaluations during training, "
            "then `hpcgan eval`; linear interpolation between the evaluations around the crossing; at Q by the first "
            "evaluation: that evaluation's step, an upper bound), the compute time C "
            "per step (step time minus exposed communication, slowest rank), and the payload each rank sends per step;",
            f"- modelled: the communication time at N ranks, each algorithm's formula (docs/ALGORITHMS.md §5) on the "
            f"network {net.describe()}; step time T(N) = C + T_comm(N) - min(f·T_comm(N), C);",
            f"- overlap f: {'; '.join(sources)};",
            "- assumed: the steps to Q measured at the runs' rank count hold at N (weak scaling: the per-rank batch "
            "stays, the global batch grows; usually optimistic), no network contention, C unchanged at N. "
            "± = 95% Student-t CI over the seeds that reached Q.", ""]
    if any(a.row.oversubscribed for a in answers):
        out += ["⚠: oversubscribed configurations waited for cores inside and outside their communication, so their "
                "measured C is unreliable in either direction, and so are their times at N.", ""]
    return out


def _missing(table: QualityTable) -> list[str]:
    if not table.missing:
        return []
    return ["Not in the quality table or plot:", "", *[f"- {r.path.name}: {why}" for r, why in table.missing], ""]


def costmodel_section(rows: list[Row], files: list[Path], proj: NetworkModel,
                      overlap: float | None = None) -> tuple[list[str], list[float]]:
    out = ["## Cost model: predicted vs measured step time", ""]
    fitted, per_m, sharing = cm.fit_network(files), cm.fit_per_ranks(files), cm.read_sharing(files)
    if fitted is None:
        return out + ["No `hpcgan bench comm` files (comm_nN.hdf5) in the sweep folder: run the sweep with "
                      "rank counts >= 2 to fit alpha and B.", ""], []
    out += [f"Network fitted on this machine, pooled: {fitted.describe()}."]
    out += [f"At M = {m}: {net.describe()}." for m, net in sorted(per_m.items())]
    out += [f"At M = {m}: ranks share cores; time-sharing factor s = "
            + ", ".join(f"{f:.2f} at {1e3 * c:.2g} ms" for c, f in zip(sh.cpu, sh.factor))
            + " of CPU work per step (`hpcgan bench sharing`)." for m, sh in sorted(sharing.items()) if sh.oversubscribed]
    out += ["", "Predicted T(M) = C(M) + T_comm(M) with alpha, B fitted at the same M (pooled fit otherwise). "
            "C(M) is the slowest rank's median non-communication time per step: as measured when every rank has "
            "a core, else s(M, w)·w with w its CPU time per step outside collectives (waits for a core inside "
            "the measured time are what s models). T_comm is each algorithm's own model (docs/ALGORITHMS.md §5): "
            + "; ".join(f"{a}: {cm.comm_formula(a)}" for a in sorted({r.algo for r in rows}))
            + f". Target: |error| ≤ {100 * TARGET_ERROR:.0f}% at M ≥ 2 (1-rank rows are exact by construction and "
            "not counted).", ""]
    body, errors, by_algo = [], [], defaultdict(list)
    for r in rows:
        by_algo[(r.scaling, r.algo)].append(r)
    for (scaling, algo), group in sorted(by_algo.items()):
        work = cm.workload([run for row in group for run in row.runs])
        for r in group:
            c = sum(cm.local_time(run, sharing.get(r.ranks)) for run in r.runs) / len(r.runs)
            t_comm = cm.comm_time(algo, per_m.get(r.ranks, fitted), r.ranks, work)
            pred, meas = c + t_comm, r.step_time.mean
            err = (pred - meas) / meas
            if math.isfinite(err) and r.ranks > 1:
                errors.append(err)
            body.append([scaling, r.name, _ms(c), _ms(t_comm), _ms(pred), _ms(meas),
                         f"{100 * err:+.1f}%" if math.isfinite(err) else "no model"])
    out += _table(["scaling", "configuration", "C(M) [ms]", "T_comm model [ms]", "predicted [ms]", "measured [ms]",
                   "error"], body)
    if errors:
        worst = max(abs(e) for e in errors)
        within = sum(abs(e) <= TARGET_ERROR for e in errors)
        out += [f"{within} of {len(errors)} predictions within {100 * TARGET_ERROR:.0f}%; largest |error| "
                f"{100 * worst:.1f}%.", ""]
    out += projection_section(by_algo, proj, overlap)
    return out, errors


def projection_section(by_algo: dict[tuple[str, str], list[Row]], net: NetworkModel,
                       overlap: float | None = None) -> list[str]:
    """Step time and efficiency at up to 2000 ranks, with ``overlap`` (default: measured, else 0)."""
    measured = overlap_fraction([run for group in by_algo.values() for row in group for run in row.runs])
    f = overlap if overlap is not None else measured if measured is not None else 0.0
    how = "given" if overlap is not None else "measured from t_comm_hidden" if measured is not None else "none recorded"
    out = [f"## Projection to {PROJECTION_RANKS[-1]} ranks", "",
           f"Network: {net.describe()}. Assumptions: C(1) as measured here at 1 rank (weak: constant per rank; "
           "strong: C(1)/M, ideal compute scaling); the models of docs/ALGORITHMS.md §5 with no contention, a "
           f"fraction f = {f:.2f} of communication hidden behind compute ({how}), payloads as measured in the "
           "sweep; dposg degree-independent (neighbours served in parallel).", ""]
    header = ["scaling", "algo", "d", "payload/rank [KB]", *[f"M={m}" for m in PROJECTION_RANKS]]
    body = []
    for (scaling, algo), group in sorted(by_algo.items()):
        ones = [r for r in group if r.ranks == 1]
        if not ones or cm.algorithm(algo) is None or scaling not in ("weak", "strong"):
            continue
        work = cm.workload([run for row in group for run in row.runs])
        c1 = sum(cm.local_time(run) for run in ones[0].runs) / len(ones[0].runs)
        cells = [f"{_ms(t)} ms / {e:.2f}" for _, t, e in cm.project(algo, net, work, c1, scaling, PROJECTION_RANKS, f)]
        body.append([scaling, algo, str(work.d), f"{work.payload / 1e3:.1f}", *cells])
    return out + ["Cells: predicted step time / efficiency.", ""] + _table(header, body)


def write_report(paths: list[str | Path], out: Path, net: NetworkModel, metric: str | None = None,
                 overlap: float | None = None, target: float | None = None) -> Path:
    """Write ``out/report.md`` and the figures (PNG and PDF; quality on ``metric``, default: each
    dataset's headline metric unless saturated); returns the markdown path. Time to quality uses
    ``overlap`` (default: measured, else 0) and the quality ``target`` (default: see ttq). Unreadable
    files are skipped and listed."""
    runs, unreadable, others = load_runs(paths)
    if not runs:
        raise UsageError(f"no readable results files under {', '.join(map(str, paths))}"
                         + "".join(f"; {line}" for line in skipped_lines(unreadable)))
    for line in skipped_lines(unreadable):
        get_logger().warning(line)
    quality = quality_table(runs, metric)  # checks --metric before anything is written
    out.mkdir(parents=True, exist_ok=True)
    rows = scaling_rows(runs)
    machines = sorted({str(r.attrs.get("machine", "unknown")) for r in runs})
    machine = "; ".join(machines)
    unfinished = [r.path.name for r in runs if not r.finished]
    md = [f"# Scaling report: {', '.join(map(str, paths))}", "",
          f"Machine: {machine}.", f"{len(runs)} results file(s); step time = median over timed steps "
          "(warm-up excluded) of the slowest rank; ± = 95% Student-t CI over repeats.", ""]
    if unfinished:
        md += [f"Left out (unfinished): {', '.join(unfinished)}.", ""]
    if unreadable:
        md += [f"Skipped (unreadable): {'; '.join(f'{p.name}: {why}' for p, why in unreadable)}.", ""]
    figures = []
    scalings = sorted({r.scaling for r in rows})
    datasets = sorted({r.dataset for r in quality.rows})
    progress = Progress("report", len(scalings) + len(datasets) + 2, "sections")
    for scaling in scalings:
        progress.update(scalings.index(scaling))
        mine = [r for r in rows if r.scaling == scaling]
        md += scaling_section(scaling, mine)
        if any(r.speedup is not None for r in mine):
            figures += plot_scaling(mine, scaling, out / f"scaling_{scaling}.png", machine)
        figures += plot_phases(mine, scaling, out / f"phases_{scaling}.png", machine)
    bench_files = sorted({f for p in map(Path, paths) if p.is_dir() for pattern in BENCH_FILES
                          for f in p.rglob(pattern)} | set(others))
    md += quality_section(quality)
    for i, data in enumerate(datasets):
        progress.update(len(scalings) + i)
        figures += plot_quality(quality, data, out / f"quality_{slug(data)}.png", machine)
    progress.update(len(scalings) + len(datasets))
    answers = time_to_quality(quality, net, overlap, target)
    md += ttq_section(answers, net, target is not None)
    if any(a.reached for a in answers):
        figures += plot_time_to_quality(answers, out / "time_to_quality.png", machine, net.describe())
    progress.update(len(scalings) + len(datasets) + 1)
    section, _ = costmodel_section(rows, bench_files, net, overlap)
    md += section
    progress.close()
    md += ["## Figures", "", "Each figure also as PDF (same name).", "",
           *[f"![{f.stem}]({f.name})" for f in figures if f.suffix == ".png"], ""]
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path
