"""Reading results files back: one :class:`RunResult` per HDF5 file (used by summary, report and
claims). :func:`load_run` checks a file against the schema before reading it, so a damaged or
crafted file is one :class:`UnreadableResults` line, never a traceback or an unbounded allocation."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import UsageError
from .schema import SCHEMA, first_line, layout_problems


def slowest_median(values: np.ndarray) -> float:
    """The slowest rank's median over steps of a (steps, ranks) array."""
    return float(np.nanmax(np.nanmedian(values, axis=0)))


@dataclass(frozen=True)
class Quality:
    """A run's final quality: from ``hpcgan eval`` of its final model (/final_eval) when there is
    one, else the last evaluation during training (/eval)."""

    values: dict[str, float]
    samples: int        # generated samples behind each value
    step: int           # training step of the model evaluated
    source: str         # "hpcgan eval" or "training"
    is_splits: int      # splits of the IS values (mean over splits; *_is_std their std)


@dataclass
class RunResult:
    path: Path
    attrs: dict[str, Any]
    config: dict[str, Any]
    steps: dict[str, np.ndarray]        # column -> (n_steps, world_size)
    eval: dict[str, np.ndarray]         # metric -> (n_evals,), with "step"
    series: dict[str, dict[str, np.ndarray]]
    eval_attrs: dict[str, Any] = field(default_factory=dict)        # /eval attrs: samples, is_splits
    final_eval: dict[str, float] = field(default_factory=dict)      # /final_eval: metric -> value
    final_eval_attrs: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)     # /labels (pcwgan): name -> per label

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

    def samples_per_step(self, kind: str = "real") -> float:
        """Mean over timed steps of the ``kind`` ("real" or "fake") samples all ranks together
        consumed per step (/steps/<kind>_samples; NaN in files older than schema v3)."""
        column = f"{kind}_samples"
        if column not in self.steps:
            return float("nan")
        n = self.timed(column).astype(np.float64)
        n[n < 0] = np.nan  # steps a rank did not take
        return float(np.nanmean(np.nansum(n, axis=1))) if n.size else float("nan")

    def throughput(self, kind: str = "real") -> float:
        """Samples of ``kind`` consumed per second by all ranks: samples per step / step time."""
        return self.samples_per_step(kind) / self.step_time()

    def cpu_step_time(self) -> float:
        """The slowest rank's median CPU time per timed step [s] (/steps/cpu: work, not waiting
        for a core), NaN in files before schema v2."""
        return slowest_median(self.timed("cpu")) if "cpu" in self.steps else float("nan")

    def rank_seconds(self) -> float:
        """The training time of all ranks together: the sum over ranks of each one's last
        ``elapsed`` [rank-seconds] (the unit of ``--budget`` comparisons, docs/CLI.md)."""
        e = self.steps.get("elapsed")
        if e is None or not e.size:
            return float("nan")
        return float(np.nansum(np.nanmax(np.where(np.isfinite(e), e, np.nan), axis=0)))

    def updates(self) -> tuple[np.ndarray, np.ndarray]:
        """(generator, critic) updates of each of the run's models: per label from /labels
        (pcwgan), else one model from /steps/{g,d}_updates (the sum over rank 0's steps; every rank
        applies as many); empty arrays in files before schema v5."""
        if "g_updates" in self.labels:
            return self.labels["g_updates"].astype(np.int64), self.labels["d_updates"].astype(np.int64)
        if "g_updates" not in self.steps:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        g, d = self.steps["g_updates"][:, 0], self.steps["d_updates"][:, 0]
        return np.array([g[g >= 0].sum()]), np.array([d[d >= 0].sum()])

    def updates_at(self, step: int) -> float:
        """Mean generator updates per model after the first ``step`` steps (of every rank's clock):
        pcwgan's rank r shares its updates among the labels it holds (/labels/owner); NaN in files
        before schema v5."""
        if "g_updates" not in self.steps:
            return float("nan")
        g = self.steps["g_updates"][:step]
        done = np.where(g >= 0, g, 0).sum(axis=0).astype(np.float64)
        if "owner" in self.labels:
            held = np.bincount(self.labels["owner"].astype(np.int64), minlength=self.world_size)
            return float(done.sum() / held.sum())
        return float(done[0])

    def updates_text(self) -> str:
        """Updates per model in a few characters: "G 161 D 161" or, per label, "G 5-6 D 25-30 /label"."""
        g, d = self.updates()
        if not g.size:
            return "-"
        span = (lambda a: f"{a.min()}" if a.min() == a.max() else f"{a.min()}-{a.max()}")
        return f"G {span(g)} D {span(d)}" + (" /label" if "g_updates" in self.labels else "")

    def step_cv(self) -> float:
        """Coefficient of variation (std / mean) of the timed step times of the slowest rank: the
        noise within the run."""
        wall = self.timed("wall")
        slowest = int(np.nanargmax(np.nanmedian(wall, axis=0)))
        w = wall[:, slowest]
        w = w[np.isfinite(w)]
        return float(w.std(ddof=1) / w.mean()) if w.size > 1 else float("nan")

    @property
    def ranks(self) -> list[dict[str, Any]]:
        """Per rank: host, local_rank, device, threads, cpu_affinity (empty for files before schema v3)."""
        return json.loads(self.attrs.get("ranks_json", "[]"))

    @property
    def dataset(self) -> str:
        """The data the run was trained on (with ``--labels K``: "NAME, labels < K")."""
        data = self.config.get("data", {})
        k = int(data.get("labels", 0))
        return str(data.get("data", "unknown")) + (f", labels < {k}" if k else "")

    def last_eval(self) -> dict[str, float]:
        """The last evaluation during training (/eval)."""
        return {k: float(v[-1]) for k, v in self.eval.items() if k != "step" and len(v)}

    def quality(self) -> Quality:
        """The run's final quality, preferring ``hpcgan eval`` (/final_eval) over training's last /eval."""
        if self.final_eval:
            a = self.final_eval_attrs
            return Quality(dict(self.final_eval), int(a["samples"]), int(a["step"]), "hpcgan eval",
                           int(a["is_splits"]))
        steps, a = self.eval.get("step", []), self.eval_attrs
        samples = a.get("samples", self.config.get("run", {}).get("eval_samples", 0))
        return Quality(self.last_eval(), int(samples), int(steps[-1]) if len(steps) else -1, "training",
                       int(a.get("is_splits", 1)))  # files before schema v3: one split


class UnreadableResults(UsageError):
    """A file that is not a results file a reader can use; ``str()`` is one line saying why (a
    UsageError, so a command that meets one unhandled says that line, and a ValueError)."""


#: Of the memory available now, the most one results file may take once read.
READ_SHARE = 0.5


def load_run(path: str | Path) -> RunResult:
    """One results file, read whole (small: a row per step) once :func:`check_readable` passed
    (nothing is read before). UnreadableResults, one line, for a file that fails it; no other
    exception for any file contents."""
    with _open(path) as f:
        try:
            check_readable(f)
            attrs = _attrs(f)
            steps = {k: ds[()] for k, ds in f["steps"].items()}
            series = {g: {k: ds[()] for k, ds in f[g].items()} for g in SCHEMA.series if g in f}
            eval_attrs = _attrs(f["eval"]) if "eval" in f else {}
            final, final_attrs = {}, {}
            labels = {k: ds[()] for k, ds in f["labels"].items()} if "labels" in f else {}
            if "final_eval" in f:
                final = {k: float(ds[()]) for k, ds in f["final_eval"].items()}
                final_attrs = _attrs(f["final_eval"])
        except UnreadableResults:
            raise
        except Exception as e:  # HDF5 meets damage below the layout (a truncated file)
            raise UnreadableResults(first_line(e)) from None
    config = json.loads(attrs.get("config_json", "{}"))
    return RunResult(Path(path), attrs, config, steps, series.get("eval", {}), series, eval_attrs, final, final_attrs,
                     labels)


def check_readable(f: h5py.File) -> None:
    """UnreadableResults unless the open file ``f`` is a results file a reader can use: its layout
    and attribute types pass :func:`~hpcgan.results.schema.layout_problems`, it has step rows, and
    its data fits in ``READ_SHARE`` of the memory available (a compressed dataset may declare more
    than the file stores)."""
    from ..resources import available_memory

    if "steps" not in f:
        raise UnreadableResults("not a results file (no /steps)")
    problems = layout_problems(f, strict=False)
    if problems:
        more = f" (and {len(problems) - 1} more: hpcgan validate lists them)" if len(problems) > 1 else ""
        raise UnreadableResults(problems[0] + more)
    if f["steps"]["step"].shape[0] == 0:
        raise UnreadableResults("no steps recorded (the run stopped before its first step)")
    labels = f.get("labels")
    if labels is not None and not (isinstance(labels, h5py.Group) and all(
            isinstance(ds, h5py.Dataset) and ds.dtype.kind in "iuf" for ds in labels.values())):
        raise UnreadableResults("/labels should hold number arrays")
    datasets = [*f["steps"].values(), *(ds for g in SCHEMA.series if g in f for ds in f[g].values()),
                *(labels.values() if labels is not None else ())]
    size, room = sum(ds.size * ds.dtype.itemsize for ds in datasets), available_memory()
    if size > READ_SHARE * room:
        raise UnreadableResults(f"too large to read here: {size / 2**30:.1f} GiB of data, "
                                f"{room / 2**30:.1f} GiB of memory available")


def unreadable(path: str | Path) -> str | None:
    """Why ``path`` is not a results file a reader can use (one line), or None."""
    try:
        with _open(path) as f:
            check_readable(f)
    except UnreadableResults as e:
        return str(e)
    except Exception as e:
        return first_line(e)
    return None


def _open(path: str | Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except Exception as e:  # OSError; ValueError/RuntimeError for some damaged files
        raise UnreadableResults(first_line(e)) from None


def _attrs(obj) -> dict[str, Any]:
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in obj.attrs.items()}


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Results files named directly or found (recursively) in the folders named, sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        found += sorted(p.rglob("*.h5")) if p.is_dir() else [p]
    return found
