import h5py
import numpy as np
import pytest
from mpi4py import MPI

from hpcgan.results.schema import StepStats, validate
from hpcgan.errors import NonFiniteLossError, UsageError
from hpcgan.results.recorder import Recorder
from helpers import schema_attrs


def rows(n, start=0, loss=0.5):
    return [StepStats(step=s, wall=0.01 * s, bytes_sent=100 + s, d_loss=loss, g_loss=loss) for s in range(start, start + n)]


def test_rows_are_flushed_in_blocks_and_indexed_by_step(tmp_path):
    path = tmp_path / "r.h5"
    rec = Recorder(path, MPI.COMM_SELF, schema_attrs(), flush_every=4)
    for r in rows(6):
        rec.record(r)
    with h5py.File(path, "r") as f:  # only the first full block is on disk before close
        assert f["steps"]["step"].shape == (4, 1)
        assert "finished_at" not in f.attrs
    rec.close(finished=True)
    with h5py.File(path, "r") as f:
        assert f["steps"]["step"][:, 0].tolist() == list(range(6))
        assert f["steps"]["bytes_sent"][:, 0].tolist() == [100 + s for s in range(6)]
        assert "finished_at" in f.attrs
    assert validate(str(path)) == []


def test_existing_output_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "keep.h5"
    path.write_bytes(b"precious")
    with pytest.raises(UsageError, match="--force"):
        Recorder(path, MPI.COMM_SELF, schema_attrs())
    assert path.read_bytes() == b"precious"
    Recorder(path, MPI.COMM_SELF, schema_attrs(), mode="force").close(finished=True)
    assert validate(str(path)) == []


def test_non_finite_loss_stops_with_step_and_keeps_rows(tmp_path):
    path = tmp_path / "nan.h5"
    rec = Recorder(path, MPI.COMM_SELF, schema_attrs(), flush_every=5)
    for r in rows(3):
        rec.record(r)
    rec.record(StepStats(step=3, d_loss=float("nan"), g_loss=0.1))
    with pytest.raises(NonFiniteLossError, match="d_loss at step 3 on rank 0"):
        rec.record(StepStats(step=4, d_loss=float("inf"), g_loss=0.1))
    rec.close(finished=False, reason="nan")
    with h5py.File(path, "r") as f:
        assert f["steps"]["step"].shape[0] == 5 and f.attrs["stopped_reason"] == "nan"


def test_resume_truncates_rows_and_series_after_the_checkpoint(tmp_path):
    path = tmp_path / "res.h5"
    rec = Recorder(path, MPI.COMM_SELF, schema_attrs(), flush_every=2)
    for r in rows(8):
        rec.record(r)
    rec.record_series("eval", 4, {"m": 1.0})
    rec.record_series("eval", 8, {"m": 2.0})
    rec.close(finished=False, reason="killed")
    rec = Recorder(path, MPI.COMM_SELF, schema_attrs(), flush_every=2, mode="resume", resume_step=6)
    for r in rows(2, start=6, loss=0.25):
        rec.record(r)
    rec.close(finished=True)
    with h5py.File(path, "r") as f:
        assert f["steps"]["step"][:, 0].tolist() == list(range(8))
        assert f["steps"]["d_loss"][6:, 0].tolist() == [0.25, 0.25]
        assert f["eval"]["step"][()].tolist() == [4] and "stopped_reason" not in f.attrs


def test_series_metric_first_seen_later_is_nan_before(tmp_path):
    path = tmp_path / "s.h5"
    rec = Recorder(path, MPI.COMM_SELF, schema_attrs())
    rec.record_series("eval", 10, {"a": 1.0})
    rec.record_series("eval", 20, {"a": 2.0, "b": 3.0})
    rec.record_series("eval", 30, {"b": 4.0})
    rec.close(finished=True)
    with h5py.File(path, "r") as f:
        assert np.isnan(f["eval"]["b"][0]) and f["eval"]["b"][1:].tolist() == [3.0, 4.0]
        assert np.isnan(f["eval"]["a"][2])
    assert validate(str(path)) == []
