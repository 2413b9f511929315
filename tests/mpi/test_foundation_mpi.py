"""Foundation under N ranks: communicator collectives, sync lockstep, recorder, config checks."""
import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from helpers import assert_all, schema_attrs
from hpcgan.algorithms import ALGORITHMS, TrainContext
from hpcgan.results.schema import StepStats, validate
from hpcgan.comm import build_communicator
from hpcgan.config import RunConfig
from hpcgan.data import build_dataset
from hpcgan.errors import NonFiniteLossError, UsageError
from hpcgan.results.recorder import Recorder
from hpcgan.train import check_same_config
from hpcgan.world import init_world

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD


def shared_tmp(tmp_path_factory):
    return COMM.bcast(str(tmp_path_factory.mktemp("mpi")) if COMM.rank == 0 else None)


def test_allreduce_of_rank_values_is_closed_form():
    c = build_communicator(RunConfig().comm)
    p = c.size
    t = torch.full((5,), float(c.rank))
    c.allreduce_(t, average=False)
    assert_all(torch.all(t == p * (p - 1) / 2), "sum of ranks")
    t = torch.full((5,), float(c.rank))
    c.allreduce_(t)
    assert_all(torch.allclose(t, torch.tensor((p - 1) / 2)), "mean of ranks")
    assert_all(c.bytes_sent == 2 * 5 * 4 and c.calls == 2, "bytes counted per call")


def test_allgather_with_ranks_of_different_lengths():
    c = build_communicator(RunConfig().comm)
    parts = c.allgather(torch.arange(c.rank + 1, dtype=torch.float32))
    assert_all([len(x) for x in parts] == list(range(1, c.size + 1)), "lengths")
    assert_all(all(torch.equal(x, torch.arange(r + 1.0)) for r, x in enumerate(parts)), "values")


def test_sync_ranks_stay_bit_identical():
    cfg = RunConfig().replace(data={"batch_size": 16})
    world = init_world(COMM, set_threads=False)
    comm = build_communicator(cfg.comm, COMM)
    algo = ALGORITHMS.get("sync")(TrainContext(cfg, world, comm, build_dataset("mog8")))
    loader = algo.make_loader()
    for t in range(5):
        stats = algo.step(next(loader), t)
        digests = COMM.allgather(algo.flat.params.numpy().tobytes())
        assert_all(len(set(digests)) == 1, f"parameters differ after step {t}")
    assert_all(stats.bytes_sent == 4 * len(algo.flat), "one dense fp32 allreduce per step")
    assert_all(stats.t_compute > 0 and stats.t_comm > 0 and stats.t_update > 0, "phases timed")


def test_recorder_places_each_ranks_rows_in_its_column(tmp_path_factory):
    path = shared_tmp(tmp_path_factory) + "/rec.h5"
    rec = Recorder(path, COMM, schema_attrs(COMM.size), flush_every=3)
    for s in range(7):
        rec.record(StepStats(step=s, bytes_sent=1000 * COMM.rank + s, d_loss=0.0, g_loss=0.0))
    rec.close(finished=True)
    ok = True
    if COMM.rank == 0:
        with h5py.File(path) as f:
            b = f["steps"]["bytes_sent"][()]
        want = np.arange(7)[:, None] + 1000 * np.arange(COMM.size)[None, :]
        ok = np.array_equal(b, want) and validate(path) == []
    assert_all(ok, "gathered rows")


def test_ranks_that_stop_at_different_steps_leave_fill_values(tmp_path_factory):
    path = shared_tmp(tmp_path_factory) + "/ragged.h5"
    rec = Recorder(path, COMM, schema_attrs(COMM.size), flush_every=2**40)  # one flush, at close
    for s in range(3 + 2 * COMM.rank):
        rec.record(StepStats(step=s, bytes_sent=0, d_loss=0.0, g_loss=0.0))
    rec.close(finished=True)
    ok = True
    if COMM.rank == 0:
        with h5py.File(path) as f:
            steps = f["steps"]["step"][()]
            wall = f["steps"]["wall"][()]
        n = 3 + 2 * (COMM.size - 1)
        ok = steps.shape == (n, COMM.size) and validate(path) == []
        for r in range(COMM.size):
            mine = 3 + 2 * r
            ok = ok and steps[:mine, r].tolist() == list(range(mine)) and (steps[mine:, r] == -1).all()
            ok = ok and np.isnan(wall[mine:, r]).all()
    assert_all(ok, "ragged rows")


def test_non_finite_loss_on_one_rank_stops_every_rank(tmp_path_factory):
    path = shared_tmp(tmp_path_factory) + "/nan.h5"
    rec = Recorder(path, COMM, schema_attrs(COMM.size), flush_every=4)
    bad_rank = COMM.size - 1
    caught = None
    try:
        for s in range(8):
            loss = float("nan") if (COMM.rank == bad_rank and s == 2) else 0.1
            rec.record(StepStats(step=s, d_loss=0.1, g_loss=loss))
    except NonFiniteLossError as e:
        caught = e
    rec.close(finished=False, reason="nan")
    assert_all(caught is not None and (caught.step, caught.rank, caught.which) == (2, bad_rank, "g_loss"),
               f"every rank names step 2 on rank {bad_rank}: {caught}")


def test_ranks_with_different_configs_refuse_to_run():
    cfg = RunConfig().replace(run={"seed": COMM.rank})
    world = init_world(COMM, set_threads=False)
    with pytest.raises(UsageError, match="different configurations"):
        check_same_config(cfg, world)
    check_same_config(RunConfig(), world)  # identical configs pass
