"""Recorder: per-rank step rows gathered to rank 0 and appended to the results file.

Each rank buffers its :class:`~hpcgan.results.schema.StepStats` rows locally (a tuple append per step).
Every ``flush_every`` rows the buffers are gathered to rank 0 (one collective, outside every timed
phase), written as one slab per column and flushed to disk, so a killed job leaves a readable file
that misses at most the last flush interval. The same flush checks the losses for NaN/inf and
stops every rank together, naming the first step and rank where one appeared.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from mpi4py import MPI

from .schema import SCHEMA, StepStats
from ..errors import NonFiniteLossError, UsageError

COLUMNS = SCHEMA.step_columns
_COL = {c.name: i for i, c in enumerate(COLUMNS)}


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Recorder:
    """Writes one results file; every method is called on every rank (rank 0 does the I/O).

    ``mode`` is "create" (refuse an existing file), "force" (replace it) or "resume" (keep rows of
    steps before ``resume_step`` and continue appending).
    """

    def __init__(self, path: str | Path, comm: MPI.Comm, attrs: dict[str, Any], flush_every: int = 50,
                 mode: str = "create", resume_step: int = 0):
        self.path, self.comm, self.flush_every = Path(path), comm, flush_every
        self._rows: list[tuple] = []
        self._file: h5py.File | None = None
        self._columns: dict[str, h5py.Dataset] = {}
        error = None
        if comm.rank == 0:
            try:
                self._file = self._open(attrs, mode, resume_step)
                self._columns = {c.name: self._file["steps"][c.name] for c in COLUMNS}
            except (OSError, UsageError) as e:
                error = str(e)
        error = comm.bcast(error, root=0)
        if error:
            raise UsageError(error)

    # -- opening -----------------------------------------------------------------------------
    def _open(self, attrs: dict[str, Any], mode: str, resume_step: int) -> h5py.File:
        if mode == "resume":
            if not self.path.exists():
                raise UsageError(f"cannot resume: {self.path} does not exist")
            f = h5py.File(self.path, "a")
            self._truncate(f, resume_step)
            return f
        if self.path.exists() and mode != "force":
            raise UsageError(f"{self.path} exists; pass --force to replace it or --resume to continue it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "force":
            self.path.unlink(missing_ok=True)
        f = h5py.File(self.path, "w-")
        world = int(attrs["world_size"])
        for key, value in {"schema_version": SCHEMA.version, "started_at": utc_now(), **attrs}.items():
            f.attrs[key] = value
        steps = f.create_group("steps")
        for col in COLUMNS:
            ds = steps.create_dataset(col.name, shape=(0, world), maxshape=(None, world),
                                      dtype=col.dtype, chunks=(256, world), fillvalue=col.fill)
            ds.attrs["unit"] = col.unit
            ds.attrs["doc"] = col.doc
        f.flush()
        return f

    @staticmethod
    def _truncate(f: h5py.File, resume_step: int) -> None:
        for key in SCHEMA.optional_attrs:
            f.attrs.pop(key, None)
        for ds in f["steps"].values():
            ds.resize(min(ds.shape[0], resume_step), axis=0)
        for group in SCHEMA.series:
            if group in f:
                keep = int(np.sum(f[group]["step"][()] < resume_step))
                for ds in f[group].values():
                    ds.resize(keep, axis=0)
        f.flush()

    # -- step rows -----------------------------------------------------------------------------
    def record(self, stats: StepStats) -> None:
        """Buffer one row; every ``flush_every`` rows, flush (collective)."""
        self._rows.append(stats.row())
        if len(self._rows) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Gather buffered rows to rank 0, append them, and stop all ranks on a non-finite loss."""
        block = np.asarray(self._rows, dtype=np.float64).reshape(-1, len(COLUMNS))
        self._rows = []
        blocks = self.comm.gather(block, root=0)
        bad = None
        if self.comm.rank == 0:
            self._append(blocks)
            bad = _first_nonfinite(blocks)
        bad = self.comm.bcast(bad, root=0)
        if bad is not None:
            raise NonFiniteLossError(*bad)

    def _append(self, blocks: list[np.ndarray]) -> None:
        nonempty = [b for b in blocks if len(b)]
        if not nonempty:
            return
        lo = int(min(b[0, _COL["step"]] for b in nonempty))
        hi = int(max(b[-1, _COL["step"]] for b in nonempty)) + 1
        written = self._columns["step"].shape[0]
        for col in COLUMNS:
            ds = self._columns[col.name]
            slab = np.full((hi - lo, len(blocks)), col.fill, dtype=col.dtype)
            if lo < written:  # rows an earlier flush began (ranks at different steps)
                keep = min(written, hi)
                slab[: keep - lo] = ds[lo:keep]
            for r, b in enumerate(blocks):
                if len(b):
                    slab[b[:, _COL["step"]].astype(np.int64) - lo, r] = b[:, _COL[col.name]]
            ds.resize(max(hi, written), axis=0)
            ds[lo:hi] = slab
        self._file.flush()

    # -- other datasets (rank 0 writes; values must already be global) --------------------------
    def record_series(self, group: str, step: int, values: dict[str, float], **attrs: Any) -> None:
        """Append one entry to /<group>/step and /<group>/<name> (e.g. eval metrics, consensus);
        ``attrs`` are set on the group (e.g. the evaluation's sample count)."""
        if self.comm.rank != 0:
            return
        g = self._file.require_group(group)
        g.attrs.update(attrs)
        n = g["step"].shape[0] if "step" in g else 0
        for name, value in {"step": step, **values}.items():
            if name not in g:  # a metric first seen now: earlier entries are NaN
                g.create_dataset(name, shape=(n,), maxshape=(None,), dtype="i8" if name == "step" else "f8",
                                 chunks=(256,), fillvalue=-1 if name == "step" else np.nan)
            ds = g[name]
            ds.resize(n + 1, axis=0)
            ds[n] = value
        for name, ds in g.items():  # metrics missing from this entry stay NaN
            if ds.shape[0] < n + 1:
                ds.resize(n + 1, axis=0)
        self._file.flush()

    def write_array(self, path: str, data: np.ndarray, **attrs: Any) -> None:
        if self.comm.rank != 0:
            return
        if path in self._file:
            del self._file[path]
        ds = self._file.create_dataset(path, data=data)
        ds.attrs.update(attrs)
        self._file.flush()

    def set_attrs(self, **attrs: Any) -> None:
        if self.comm.rank == 0:
            self._file.attrs.update({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in attrs.items()})
            self._file.flush()

    def close(self, finished: bool, reason: str = "") -> None:
        """Flush what is buffered, mark the run finished (or why it stopped) and close."""
        try:
            self.flush()
        finally:
            if self.comm.rank == 0 and self._file is not None:
                if finished:
                    self._file.attrs["finished_at"] = utc_now()
                else:
                    self._file.attrs["stopped_reason"] = reason or "stopped"
                self._file.close()
                self._file = None


def _first_nonfinite(blocks: list[np.ndarray]) -> tuple[int, int, str] | None:
    """(step, rank, loss name) of the earliest NaN/inf loss in the gathered rows, if any."""
    found = []
    for rank, b in enumerate(blocks):
        for name in ("d_loss", "g_loss"):
            bad = np.flatnonzero(~np.isfinite(b[:, _COL[name]]))
            if len(bad):
                found.append((int(b[bad[0], _COL["step"]]), rank, name))
    return min(found, default=None)
