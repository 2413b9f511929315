import time

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from hpcgan.results.schema import SCHEMA, StepStats, validate
from hpcgan.results.timer import PhaseTimer
from hpcgan.results.recorder import Recorder
from helpers import schema_attrs


def test_phase_timer_accumulates_and_resets():
    timer = PhaseTimer()
    timer.begin()
    with timer("compute"):
        time.sleep(0.01)
    with timer("compute"):
        time.sleep(0.01)
    with timer("comm"):
        pass
    with timer("update"):
        c0 = time.thread_time()
        sum(i * i for i in range(200_000))  # CPU work
        update_cpu = time.thread_time() - c0
    with timer("comm"):
        c0 = time.thread_time()
        sum(i * i for i in range(200_000))  # not counted as CPU work
        comm_cpu = time.thread_time() - c0
    times = timer.take()
    assert set(times) == {"t_compute", "t_compress", "t_comm", "t_update", "t_comm_hidden", "cpu"}
    assert 0.02 <= times["t_compute"] < 0.5
    # CPU seconds against CPU seconds (a loaded machine stretches wall time, not these)
    assert update_cpu <= times["cpu"] < update_cpu + 0.5 * comm_cpu + 0.005, (times, update_cpu, comm_cpu)
    assert timer.take()["t_compute"] == 0.0


def test_a_phase_inside_another_pauses_it():
    """Compression run by a gradient hook inside "compute" is compression, not compute: nested
    phases never overlap, so the phases add up to at most the step's wall time."""
    timer = PhaseTimer()
    t0 = time.perf_counter()
    with timer("compute"):
        time.sleep(0.05)
        with timer("compress"):
            time.sleep(0.1)
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    timer.hidden(0.3)
    times = timer.take()
    assert 0.1 <= times["t_compute"] < 0.1 + 0.05 and 0.1 <= times["t_compress"] < 0.15
    assert times["t_compute"] + times["t_compress"] <= wall + 1e-6 and times["t_comm_hidden"] == 0.3


def test_step_stats_and_schema_columns_agree():
    assert [c.name for c in SCHEMA.step_columns] == list(StepStats.__dataclass_fields__)
    assert len(StepStats(step=3).row()) == len(SCHEMA.step_columns)


def write_valid(path, steps=5):
    rec = Recorder(path, MPI.COMM_SELF, schema_attrs(), flush_every=2)
    for s in range(steps):
        rec.record(StepStats(step=s, wall=0.1, d_loss=1.0, g_loss=1.0))
    rec.record_series("eval", steps, {"modes_covered": 8.0})
    rec.close(finished=True)


def test_validate_accepts_recorder_output(tmp_path):
    path = tmp_path / "ok.h5"
    write_valid(path)
    assert validate(str(path)) == []


@pytest.mark.parametrize("damage, expected", [
    (lambda f: f.attrs.__delitem__("algorithm"), "missing root attribute 'algorithm'"),
    (lambda f: f.attrs.__setitem__("schema_version", 1), "schema_version"),
    (lambda f: f["steps"].__delitem__("t_comm"), "missing /steps/t_comm"),
    (lambda f: f["steps"]["wall"].attrs.__setitem__("unit", "ms"), "unit"),
    (lambda f: f["steps"]["d_loss"].resize(3, axis=0), "different lengths"),
    (lambda f: f.attrs.__setitem__("config_json", "{not json"), "config_json"),
    (lambda f: f["eval"]["modes_covered"].resize(3, axis=0), "/eval/modes_covered"),
    (lambda f: f.attrs.__setitem__("ranks_json", "[]"), "should list 1 ranks"),
    (lambda f: f.attrs.__setitem__("ranks_json", '[{"rank": 0}]'), "lacks cpu_affinity, device, host"),
    (lambda f: f.create_group("final_eval").create_dataset("fid", data=1.0), "/final_eval lacks attribute 'samples'"),
    (lambda f: f["steps"].__delitem__("real_samples"), "missing /steps/real_samples"),
])
def test_validate_reports_each_kind_of_damage(tmp_path, damage, expected):
    path = tmp_path / "bad.h5"
    write_valid(path)
    with h5py.File(path, "a") as f:
        damage(f)
    problems = validate(str(path))
    assert any(expected in p for p in problems), problems


def test_validate_rejects_non_hdf5(tmp_path):
    path = tmp_path / "x.h5"
    path.write_text("not hdf5")
    assert validate(str(path))[0].startswith("cannot open")
