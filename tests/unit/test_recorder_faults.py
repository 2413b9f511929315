"""Failed writes of the results file: the file keeps its last complete block and validates, the
failure is raised once with the path and the reason, and nothing is written after it."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import hpcgan.results.recorder as recorder_module
from helpers import schema_attrs
from hpcgan.errors import NonFiniteLossError, WriteError
from hpcgan.results.recorder import Recorder
from hpcgan.results.schema import StepStats, validate


def record(rec: Recorder, steps: range, d_loss: float = 0.5) -> None:
    for t in steps:
        rec.record(StepStats(step=t, wall=0.01, elapsed=0.01 * t, bytes_sent=10, d_loss=d_loss, g_loss=0.5))


def rows_and_marks(path) -> tuple[int, set[str]]:
    with h5py.File(path) as f:
        steps = f["steps"]
        assert len({ds.shape[0] for ds in steps.values()}) == 1, "columns of different lengths"
        assert not np.isnan(steps["d_loss"][()]).any() and (steps["bytes_sent"][()] >= 0).all()
        return steps["step"].shape[0], set(f.attrs) & {"finished_at", "stopped_reason"}


def test_a_full_disk_keeps_the_last_complete_block_and_is_reported_once(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    rec = Recorder(path, MPI.COMM_SELF, schema_attrs(), flush_every=8)
    record(rec, range(16))
    monkeypatch.setattr(recorder_module, "free_bytes", lambda p: 4096)
    with pytest.raises(WriteError, match=f"cannot write {path}: no space left on device; it keeps the 16 rows"):
        record(rec, range(16, 24))
    record(rec, range(24, 40))  # later flushes write nothing and do not raise again
    rec.record_series("eval", 40, {"m": 1.0})
    rec.close(finished=True)
    assert rows_and_marks(path) == (16, set()) and validate(str(path)) == []


def test_a_write_failing_mid_block_is_rolled_back_to_the_last_block(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    rec = Recorder(path, MPI.COMM_SELF, schema_attrs(), flush_every=8)
    record(rec, range(8))
    setitem, calls = h5py.Dataset.__setitem__, []

    def failing(self, key, value):
        calls.append(self.name)
        if len(calls) == 5:  # the fifth column of the block
            raise RuntimeError("Can't write data (file write failed: errno = 28, error message = 'No space left')")
        return setitem(self, key, value)
    monkeypatch.setattr(h5py.Dataset, "__setitem__", failing)
    with pytest.raises(WriteError, match="no space left on device"):
        record(rec, range(8, 16))
    monkeypatch.setattr(h5py.Dataset, "__setitem__", setitem)
    rec.close(finished=False, reason="x")
    assert rows_and_marks(path) == (8, set()) and validate(str(path)) == []


def test_a_failed_series_write_is_reported_at_the_next_flush(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    rec = Recorder(path, MPI.COMM_SELF, schema_attrs(), flush_every=4)
    record(rec, range(2))

    def broken(*a, **k):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(rec, "_append_series", broken)
    rec.record_series("eval", 2, {"m": 1.0})  # rank 0 only: nothing raised here
    with pytest.raises(WriteError, match=f"cannot write {path}: input/output error"):
        record(rec, range(2, 4))
    rec.close(finished=True)
    assert rows_and_marks(path) == (0, set())


def test_a_nonfinite_loss_in_the_last_rows_marks_the_file_stopped_not_finished(tmp_path):
    path = tmp_path / "run.h5"
    rec = Recorder(path, MPI.COMM_SELF, schema_attrs(), flush_every=100)
    record(rec, range(3))
    record(rec, range(3, 4), d_loss=math.nan)
    with pytest.raises(NonFiniteLossError, match="step 3"):
        rec.close(finished=True)
    with h5py.File(path) as f:
        assert "finished_at" not in f.attrs and "step 3" in f.attrs["stopped_reason"]
