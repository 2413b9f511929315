"""A plain-text table of results files, for the terminal (``hpcgan summary``, ``make demo``)."""
from __future__ import annotations

import math
from pathlib import Path

import h5py

from ..errors import UsageError
from ..results.reader import RunResult, find_runs, load_run
from .quality import quality_table
from .runs import MARK, bytes_per_rank_step, label, oversubscription


def read_runs(paths: list[str | Path]) -> tuple[list[RunResult], list[tuple[Path, str]]]:
    """The results files named or found under ``paths``, read, and the ones that could not be read
    as (path, why): a damaged file, a file without /steps, a path that does not exist. Skipped ones
    do not stop the others from being read."""
    runs, unreadable = [], []
    for path in find_runs(paths):
        if not path.exists():
            unreadable.append((path, "no such file or folder"))
            continue
        try:
            runs.append(load_run(path))
        except (OSError, KeyError, ValueError) as e:
            why = "not a results file (no /steps)" if isinstance(e, KeyError) else str(e).splitlines()[0]
            unreadable.append((path, why))
    return runs, unreadable


def is_results_file(path: Path) -> bool | None:
    """True for a results file (has /steps), False for another HDF5 file (e.g. `bench comm`), None if
    it cannot be opened."""
    try:
        with h5py.File(path, "r") as f:
            return "steps" in f
    except OSError:
        return None


def skipped_lines(unreadable: list[tuple[Path, str]]) -> list[str]:
    return [f"skipped (unreadable): {path}: {why}" for path, why in unreadable]


def summarize(paths: list[str | Path]) -> str:
    runs, unreadable = read_runs(paths)
    if not runs:
        raise UsageError(f"no readable results files under {', '.join(map(str, paths))}"
                         + "".join(f"; {line}" for line in skipped_lines(unreadable)))
    table = quality_table(runs)
    header = ["run", "configuration", "steps", "ms/step", "compute", "comm", "KB/rank/step", "total MB",
              "samples/s", "updates/model", "rank-s", "quality"]
    rows = []
    for r in runs:
        phases = r.phase_times()
        rows.append([r.path.stem, label(r) + (f" {MARK}" if oversubscription(r) else "")
                     + ("" if r.finished else " (unfinished)"),
                     str(r.n_steps), f"{1e3 * r.step_time():.2f}",
                     f"{1e3 * phases['t_compute']:.2f}", f"{1e3 * phases['t_comm']:.2f}",
                     f"{bytes_per_rank_step(r) / 1e3:.1f}", f"{r.total_bytes() / 1e6:.2f}", _num(r.throughput()),
                     r.updates_text(), f"{r.rank_seconds():.0f}", run_quality(r, table.metrics.get(r.dataset))])
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    savings = bytes_saved(runs)
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    machine = runs[0].attrs.get("machine", "unknown machine")
    note = ("times: median over steps (after warm-up) of the slowest rank; compute/comm: mean over ranks "
            "(comm: what the step waited for). KB/rank/step: what one rank sends per step, mean over ranks. "
            "samples/s: real samples consumed by all ranks. updates/model: generator (G) and critic (D) updates "
            "each model got (pcwgan: each label's generator, min-max over labels). rank-s: training seconds summed "
            "over ranks (what --budget SECONDS x ranks buys). quality: the final model's `hpcgan eval` where it ran, "
            f"else the last evaluation during training. Machine: {machine}")
    over = sorted({f"{MARK} {label(r)}: oversubscribed, {why}: its times include waits for a core or GPU"
                   for r in runs if (why := oversubscription(r))})
    notes = [f"{data}: {text}" for data, text in sorted(table.notes.items())]
    return "\n".join(lines + savings + over_seeds(table) + [""] + over + notes + [note] + skipped_lines(unreadable))


def _num(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else "-"  # NaN: not recorded (files before schema v3)


def run_quality(run, metric) -> str:
    q = run.quality()
    if metric is None or metric.name not in q.values:
        return "-"
    return f"{metric.name}={q.values[metric.name]:.4g} ({q.samples} samples, {q.source})"


def over_seeds(table) -> list[str]:
    """Per configuration: the quality's mean ± 95% CI over its seeds, and how many there are."""
    out = [f"{r.name} ({r.dataset}): {r.metric} = {r.estimate.fmt()} "
           + (f"(mean ± 95% CI over {r.estimate.n} seeds)" if r.estimate.n > 1 else "(1 seed: no spread)")
           for r in table.rows]
    return (["", "quality over seeds:", *out]) if out else []


def bytes_saved(runs: list) -> list[str]:
    """One line per communicating run: bytes per rank per step against a dense `sync` run of the same size."""
    dense = {r.world_size: bytes_per_rank_step(r) for r in runs if r.attrs["algorithm"] == "sync"}
    out = []
    for r in runs:
        ref = dense.get(r.world_size)
        if r.attrs["algorithm"] == "sync" or not ref:
            continue
        mine = bytes_per_rank_step(r)
        if not mine:
            saved = "sends nothing, against"
        elif mine <= ref:
            saved = f"{ref / mine:.1f}x fewer bytes per step than"
        else:
            saved = f"{mine / ref:.1f}x more bytes per step than"
        out.append(f"{r.path.stem}: {saved} dense sync ({mine / 1e3:.1f} vs {ref / 1e3:.1f} KB per rank per step)")
    return ([""] + out) if out else []
