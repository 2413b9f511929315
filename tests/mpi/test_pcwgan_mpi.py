"""pcwgan and cwgan under N ranks: ownership, zero communication, replicas, conditional sampling,
cwgan lockstep equality."""
import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from helpers import assert_all, schema_attrs
from hpcgan.algorithms import ALGORITHMS, TrainContext
from hpcgan.comm import build_communicator
from hpcgan.config import RunConfig
from hpcgan.data import build_dataset
from hpcgan.metrics.sampling import eval_labels
from hpcgan.results.recorder import Recorder
from hpcgan.world import init_world

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD
CFG = RunConfig().replace(data={"batch_size": 8}, model={"width": 16}, optim={"lr": 1e-4, "beta2": 0.9})


def build(algo: str, **algo_changes):
    cfg = CFG.replace(algo={"algo": algo, **algo_changes})
    world = init_world(COMM, set_threads=False)
    comm = build_communicator(cfg.comm, COMM)
    return ALGORITHMS.get(algo)(TrainContext(cfg, world, comm, build_dataset("mog8"))), comm


def train(algo, steps: int) -> None:
    loader = algo.make_loader()
    for t in range(steps):
        algo.step(next(loader), t)


def shared_path(tmp_path_factory, name: str) -> str:
    return COMM.bcast(str(tmp_path_factory.mktemp("pcw") / name) if COMM.rank == 0 else None)


def test_label_sets_are_disjoint_and_complete_across_ranks():
    algo, _ = build("pcwgan")
    mine = [u.label for u in algo.units]
    everyone = COMM.allgather(mine)
    flat = sorted(c for part in everyone for c in part)
    assert_all(flat == list(range(8)), f"labels over ranks {everyone}")
    assert_all(all(c % COMM.size == COMM.rank for c in mine), "c mod P = r")


def test_no_mpi_call_during_training_and_each_rank_draws_its_labels_of_the_evaluation_order():
    algo, comm = build("pcwgan")
    train(algo, 3 * len(algo.units) + 1)
    assert_all(comm.calls == 0 and comm.bytes_sent == 0, f"training communicator used: {comm.calls} calls")
    assert_all(sum(u.steps for u in algo.units) == 3 * len(algo.units) + 1, "one unit per step")
    sampler = algo.samplers()[""]
    index = sampler.indices(100, COMM.rank, COMM.size)
    x, y = sampler.draw(index)
    everyone = np.sort(np.concatenate(COMM.allgather(index)))
    assert_all(np.array_equal(everyone, np.arange(100)), "the ranks' indices partition the evaluation")
    mine = {u.label for u in algo.units}
    ok = (y.tolist() == eval_labels(index, np.full(8, 1 / 8)).tolist() and set(y.tolist()) <= mine
          and x.shape == (len(index), 2) and bool(torch.all(x.abs().sum(1) > 0)))
    assert_all(ok, "each sample of my labels, labelled as in every evaluation, from my generators")
    assert_all(comm.calls == 0, "drawing is local")


def test_replicas_keep_the_best_seed_per_label(tmp_path_factory):
    algo, comm = build("pcwgan", replicas=2)
    assert_all(len(algo.units) == 16 // COMM.size, "R*C units spread over ranks")
    train(algo, len(algo.units))
    path = shared_path(tmp_path_factory, "rep.h5")
    rec = Recorder(path, COMM, schema_attrs(COMM.size))
    algo.finish(rec)
    rec.close(finished=True)
    ok = True
    if COMM.rank == 0:
        with h5py.File(path) as f:
            lab = {k: f["labels"][k][()] for k in f["labels"]}
        best = lab["replica_score"].argmin(axis=0)
        ok = (np.array_equal(lab["replica"], best) and lab["replica_steps"].shape == (2, 8)
              and np.array_equal(lab["owner"], (best * 8 + np.arange(8)) % COMM.size)
              and np.all(lab["steps"] == 1))
    assert_all(ok, "kept replica = lowest sliced Wasserstein score; owner of that unit")
    assert_all(comm.calls == 0, "selection uses the world communicator, not the training one")


def test_cwgan_ranks_stay_bit_identical_with_dense_allreduce():
    algo, comm = build("cwgan")
    loader = algo.make_loader()
    for t in range(3):
        stats = algo.step(next(loader), t)
        digests = COMM.allgather(algo.flat.params.numpy().tobytes())
        assert_all(len(set(digests)) == 1, f"parameters differ after step {t}")
    d, g = (algo.flat.ranges[k].stop - algo.flat.ranges[k].start for k in ("D", "G"))
    want = 4 * (CFG.optim.n_critic * d + g)
    assert_all(stats.bytes_sent == want and stats.t_comm > 0, f"{stats.bytes_sent} bytes, expected {want}")
