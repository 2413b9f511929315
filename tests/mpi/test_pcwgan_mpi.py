"""pcwgan and cwgan under N ranks: ownership, zero communication, replicas, conditional sampling,
cwgan lockstep equality, pcwgan's evaluations during training (scored alone, merged at the end)."""
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from helpers import assert_all, schema_attrs
from hpcgan.algorithms import ALGORITHMS, TrainContext
from hpcgan.comm import build_communicator
from hpcgan.comm.control import ControlChannel
from hpcgan.config import RunConfig
from hpcgan.data import build_dataset
from hpcgan.metrics import MixtureEvaluator, allreduce_stats, deferred
from hpcgan.metrics.sampling import eval_labels
from hpcgan.results.reader import load_run
from hpcgan.results.recorder import Recorder
from hpcgan.train import train as run_training
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


def test_statistics_scored_alone_add_up_to_the_collective_evaluation():
    """Each rank scores its labels' samples alone (no communication); summed over ranks they are the
    statistics of the collective evaluation of the same model and noise."""
    algo, _ = build("pcwgan")
    train(algo, len(algo.units))
    ev = MixtureEvaluator(algo.ctx.dataset)
    sampler, state = algo.samplers()[""], algo.eval_noise.get_state()
    alone = ev.statistics(sampler, sampler.indices(600, COMM.rank, COMM.size), 600, ControlChannel.alone())
    merged = ev.metrics(allreduce_stats(alone, COMM), COMM)
    algo.eval_noise.set_state(state)
    collective = ev.evaluate(sampler, 600, COMM)
    assert_all(merged == collective and "hq_fraction_label7" in merged, f"{merged} != {collective}")


def test_points_every_rank_recorded_are_merged_in_order(tmp_path_factory):
    """Ranks on their own clocks: rank 0 also recorded step 12, which rank 1 never reached (it
    stopped earlier): only the common steps 4 and 8 become /eval points."""
    algo, _ = build("pcwgan")
    ev = MixtureEvaluator(algo.ctx.dataset)
    path = shared_path(tmp_path_factory, "merged.h5")
    rows = f"{path}.rank{COMM.rank}.hdf5"
    own = Recorder(rows, ControlChannel.alone(), schema_attrs(1))
    for step in (8, 4) + ((12,) if COMM.rank == 0 else ()):
        deferred.record(ev, algo.samplers(), 400, step, COMM.rank, COMM.size, own)
    own.close(finished=True)
    rec = Recorder(path, COMM, schema_attrs(COMM.size))
    n = deferred.merge(ev, Path(rows), 12 if COMM.rank == 0 else 9, 100, COMM, rec, 400)
    rec.close(finished=True)
    ok = n == 2
    if COMM.rank == 0:
        with h5py.File(path) as f:
            ok &= f["eval"]["step"][()].tolist() == [4, 8] and f["eval"].attrs["samples"] == 400
            ok &= "labels_covered" in f["eval"] and "hq_fraction_label0" in f["eval"]
    assert_all(ok, "merged points: the steps every rank recorded, in order")


def test_pcwgan_trains_with_eval_every_on_every_rank_clock(tmp_path_factory):
    out = shared_path(tmp_path_factory, "run.h5")
    cfg = CFG.replace(algo={"algo": "pcwgan"}, data={"data": "mog8:0.1"},
                      run={"steps": 12, "eval_every": 4, "eval_samples": 400, "out": out})
    run_training(cfg, init_world(COMM, set_threads=False))
    ok = True
    if COMM.rank == 0:
        run = load_run(out)
        ok = run.eval["step"].tolist() == [4, 8, 12] and np.isfinite(run.eval["labels_covered"]).all()
        ok &= run.updates()[0].tolist() == [3] * 8 and run.updates_at(4) == 1.0
    assert_all(ok, "curve points at 4 and 8 merged from the ranks' own evaluations, then the final one")
