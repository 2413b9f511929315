"""Recorder: per-rank step rows gathered to rank 0 and appended to the results file.

Each rank buffers its :class:`~hpcgan.results.schema.StepStats` rows locally (a tuple append per step).
Every ``flush_every`` rows the buffers are gathered to rank 0 (one collective, outside every timed
phase), written as one slab per column and flushed to disk, so a killed job leaves a readable file
that misses at most the last flush interval. The same flush checks the losses for NaN/inf and
stops every rank together, naming the first step and rank where one appeared.

A write that fails (a full disk) never leaves half a block: before appending, rank 0 checks that
the filesystem has room for the block (:func:`free_bytes`); if not, or if a write fails anyway,
the file is left at its last complete block, nothing is written to it any more, and the next
flush raises a :class:`~hpcgan.errors.WriteError` naming the path and the reason on every rank.
Writes of other datasets and attributes (rank 0 only) report their failure the same way.
"""
from __future__ import annotations

import datetime as dt
import errno
import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..checkpoint import IDENTITY
from ..comm.control import ControlChannel, control_of
from ..errors import NonFiniteLossError, UsageError, WriteError, write_failure
from .schema import SCHEMA, StepStats

COLUMNS = SCHEMA.step_columns
_COL = {c.name: i for i, c in enumerate(COLUMNS)}
CHUNK_ROWS = 256
#: Room kept free beyond a block's data, for HDF5's own metadata (B-tree nodes, headers).
METADATA_BYTES = 1 << 20


def free_bytes(path: Path) -> int:
    """Bytes free for this user on the filesystem holding ``path``."""
    return shutil.disk_usage(path.parent).free


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Recorder:
    """Writes one results file; every method is called on every rank (rank 0 does the I/O).

    ``mode`` is "create" (refuse an existing file), "force" (replace it) or "resume" (keep rows of
    steps before ``resume_step`` and continue appending).
    """

    def __init__(self, path: str | Path, comm: ControlChannel, attrs: dict[str, Any], flush_every: int = 50,
                 mode: str = "create", resume_step: int = 0):
        comm = control_of(comm)
        self.path, self.comm, self.flush_every = Path(path), comm, flush_every
        self._rows: list[tuple] = []
        self._file: h5py.File | None = None
        self._columns: dict[str, h5py.Dataset] = {}
        self._error: str | None = None   # rank 0: the first failed write; nothing is written after it
        self.failed = False              # every rank: that failure was reported
        error = None
        if comm.rank == 0:
            try:
                self._file = self._open(attrs, mode, resume_step)
                self._columns = {c.name: self._file["steps"][c.name] for c in COLUMNS}
            except UsageError as e:
                error = str(e)
            except Exception as e:  # OSError (cannot open), RuntimeError (HDF5 cannot write)
                error = f"cannot write {self.path}: {write_failure(self.path, e)}"
        error = comm.bcast(error, root=0)
        if error:
            raise UsageError(error).everywhere()

    # -- opening -----------------------------------------------------------------------------
    def _open(self, attrs: dict[str, Any], mode: str, resume_step: int) -> h5py.File:
        if mode == "resume":
            if not self.path.exists():
                raise UsageError(f"cannot resume: {self.path} does not exist")
            f = h5py.File(self.path, "a")
            try:
                self._check_resumable(f, attrs, resume_step)
            except UsageError:
                f.close()
                raise
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
                                      dtype=col.dtype, chunks=(CHUNK_ROWS, world), fillvalue=col.fill)
            ds.attrs["unit"] = col.unit
            ds.attrs["doc"] = col.doc
        f.flush()
        return f

    def _check_resumable(self, f: h5py.File, attrs: dict[str, Any], resume_step: int) -> None:
        """UsageError unless ``f`` is this run's file: same ranks and algorithm, rows up to the checkpoint."""
        for key in ("world_size", "algorithm", *IDENTITY):  # IDENTITY: the checkpoint's run (seed, config, id)
            theirs = f.attrs.get(key)
            theirs = theirs.item() if isinstance(theirs, np.generic) else theirs
            if key in attrs and theirs != attrs[key]:
                raise UsageError(f"cannot resume {self.path}: its {key} is {theirs!r}, this run's is "
                                 f"{attrs[key]!r}" + ("; it is another run's results file" if key in IDENTITY else ""))
        rows = f["steps"]["step"].shape[0] if "steps" in f and "step" in f["steps"] else 0
        if rows < resume_step:
            raise UsageError(f"cannot resume {self.path}: it has {rows} rows but the checkpoint is at step "
                             f"{resume_step}; it is not the results file of that checkpoint")

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

    @property
    def buffered(self) -> int:
        """Rows recorded since the last flush (the same on ranks that record in lockstep)."""
        return len(self._rows)

    def flush(self) -> None:
        """Gather buffered rows to rank 0 and append them; stop all ranks on a non-finite loss or on
        a write that failed (since the last flush)."""
        self._sync()

    def merge(self, rows: np.ndarray) -> None:
        """Collective: append this rank's ``rows`` (an (n, columns) array of its steps 0..n-1, e.g.
        read back from its own file), ``flush_every`` rows per round; failed writes are raised as
        in :meth:`flush`, non-finite losses are not (each rank checked its own)."""
        rows = rows.reshape(-1, len(COLUMNS))
        rounds = self.comm.allreduce(-(-len(rows) // self.flush_every), op="max")
        for i in range(rounds):
            self._rows = list(rows[i * self.flush_every:(i + 1) * self.flush_every])
            self._sync(check_losses=False)

    def _sync(self, check_losses: bool = True, finish: dict[str, Any] | None = None) -> None:
        """Gather and append the buffered rows; with ``finish`` (root attributes), then mark the
        file. One bcast tells every rank about a non-finite loss or a new write failure."""
        block = np.asarray(self._rows, dtype=np.float64).reshape(-1, len(COLUMNS))
        self._rows = []
        blocks = self.comm.gather(block, root=0)
        bad = failure = None
        if self.comm.rank == 0:
            bad = _first_nonfinite(blocks) if check_losses else None
            self._write(self._append, blocks)
            if finish is not None and self._file is not None:
                if bad is not None and "finished_at" in finish:
                    finish = {"stopped_reason": str(NonFiniteLossError(*bad))}
                self._write(self._file.attrs.update, finish)
                self._write(self._file.flush)
            failure = self._error if not self.failed else None
        bad, failure = self.comm.bcast((bad, failure), root=0)
        if failure:
            self.failed = True
            raise WriteError(failure).everywhere()
        if bad is not None:
            raise NonFiniteLossError(*bad).everywhere()

    def _write(self, write, *args) -> None:
        """Rank 0: ``write(*args)`` unless a write failed before; a failure is kept for the next sync."""
        if self._error is not None or self._file is None:
            return
        try:
            write(*args)
        except Exception as e:
            rows = self._columns["step"].shape[0] if self._columns else 0
            self._error = (f"cannot write {self.path}: {write_failure(self.path, e)}; it keeps the {rows} "
                           "rows flushed before")

    def _append(self, blocks: list[np.ndarray]) -> None:
        nonempty = [b for b in blocks if len(b)]
        if not nonempty:
            return
        lo = int(min(b[0, _COL["step"]] for b in nonempty))
        hi = int(max(b[-1, _COL["step"]] for b in nonempty)) + 1
        written = self._columns["step"].shape[0]
        new_chunks = -(-hi // CHUNK_ROWS) - written // CHUNK_ROWS
        need = len(COLUMNS) * 8 * len(blocks) * CHUNK_ROWS * max(new_chunks, 1) + METADATA_BYTES
        if free_bytes(self.path) < need:  # checked first: HDF5 failing mid-block leaves columns uneven
            raise OSError(errno.ENOSPC, f"{need} bytes needed")
        try:
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
        except Exception:
            for ds in self._columns.values():  # back to the last complete block
                ds.resize(written, axis=0)
            raise

    # -- other datasets (rank 0 writes; values must already be global) --------------------------
    def record_series(self, group: str, step: int, values: dict[str, float], **attrs: Any) -> None:
        """Append one entry to /<group>/step and /<group>/<name> (e.g. eval metrics, consensus);
        ``attrs`` are set on the group (e.g. the evaluation's sample count)."""
        if self.comm.rank == 0:
            self._write(self._append_series, group, step, values, attrs)

    def _append_series(self, group: str, step: int, values: dict[str, float], attrs: dict[str, Any]) -> None:
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
        if self.comm.rank == 0:
            self._write(self._replace_array, path, data, attrs)

    def _replace_array(self, path: str, data: np.ndarray, attrs: dict[str, Any]) -> None:
        if path in self._file:
            del self._file[path]
        ds = self._file.create_dataset(path, data=data)
        ds.attrs.update(attrs)
        self._file.flush()

    def set_attrs(self, **attrs: Any) -> None:
        if self.comm.rank == 0:
            self._write(self._file.attrs.update, {k: (json.dumps(v) if isinstance(v, dict) else v)
                                                  for k, v in attrs.items()})
            self._write(self._file.flush)

    def close(self, finished: bool, reason: str = "") -> None:
        """Flush what is buffered, mark the run finished (or why it stopped) and close. After a
        failed write the file is closed as it was: no mark."""
        mark = {"finished_at": utc_now()} if finished else {"stopped_reason": reason or "stopped"}
        try:
            self._sync(finish=mark)
        finally:
            if self._file is not None:  # rank 0; what could be written is on disk already
                try:
                    self._file.close()
                except Exception:
                    pass
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
