"""DPOSG under N >= 2 ranks: gossip bytes, W = I and W = complete special cases, pure gossip rate."""
import socket

import numpy as np
import pytest
import torch
from mpi4py import MPI

from helpers import assert_all
from hpcgan.algorithms import ALGORITHMS, TrainContext, resolve_config
from hpcgan.algorithms.dposg import DPOSG
from hpcgan.comm import build_communicator
from hpcgan.config import RunConfig
from hpcgan.data import build_dataset
from hpcgan.errors import UsageError
from hpcgan.comm.topology import build_topology
from hpcgan.world import World, init_world

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD
TINY = {"z_dim": 2, "width": 8}


def config(topology="ring", optimizer="omd", lr=1e-2, rounds=1):
    return RunConfig().replace(data={"batch_size": 8}, model=TINY, optim={"optimizer": optimizer, "lr": lr},
                               algo={"algo": "dposg", "topology": topology, "gossip_rounds": rounds})


def build(cfg, world=None, cls=DPOSG):
    world = world or init_world(COMM, set_threads=False)
    comm = build_communicator(cfg.comm, world.comm)
    return cls(TrainContext(cfg, world, comm, build_dataset("mog8")))


def run(algo, steps):
    loader = algo.make_loader()
    return [algo.step(next(loader), t) for t in range(steps)]


def test_bytes_and_calls_are_rounds_times_degree_and_no_global_collective():
    algo = build(config("ring", rounds=3).replace(comm={"net_latency": 0.005}))
    calls0 = algo.comm.calls
    stats = run(algo, 2)
    degree = len(algo.plan.destinations)
    assert_all(all(s.bytes_sent == 3 * degree * 4 * len(algo.flat) for s in stats), "bytes = t * degree * 4d")
    assert_all(algo.comm.calls - calls0 == 2 * 3, "one neighbour exchange per round, nothing else")
    assert_all(all(s.t_net_emulated == pytest.approx(3 * 0.005) for s in stats), "emulated: one hop per round")
    assert_all(all(s.t_comm > 0 and s.t_compute > 0 and s.t_update > 0 for s in stats), "phases timed")
    assert_all(algo.attrs()["spectral_gap"] == pytest.approx(1 - algo.topology.rho), "attrs")


def single_rank_world() -> World:
    """This rank alone (COMM_SELF) but keeping its rank number, so data and noise streams match."""
    return World(MPI.COMM_SELF, COMM.rank, 1, 0, 1, socket.gethostname(), torch.device("cpu"), 1)


@pytest.mark.parametrize("optimizer", ["omd", "oadam"])
def test_identity_W_gives_independent_single_rank_runs(optimizer):
    many = build(config("identity", optimizer))
    alone = build(config("ring", optimizer), single_rank_world())  # ring of 1 = W = [1]
    run(many, 4)
    run(alone, 4)
    assert_all(torch.equal(many.flat.params, alone.flat.params), "x^i equals rank i's own run")
    assert_all(many.comm.bytes_sent == 0, "W = I sends nothing")
    differ = len(set(COMM.allgather(many.flat.params.numpy().tobytes())))
    assert_all(differ == COMM.size, "ranks drifted apart on their own data")


class AffineGame(DPOSG):
    """F_i(x) = A x + c_i: A shared, c_i per rank, so the average field is A x + c_bar exactly."""

    def compute_gradients(self, batch):
        d = len(self.flat)
        g = torch.Generator().manual_seed(7)
        S = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
        self.A = (S - S.T) / 2 + 0.1 * torch.eye(d, dtype=torch.float64)
        self.c = torch.randn(COMM.size, d, generator=g, dtype=torch.float64)
        self.flat.grads.copy_(self.A @ self.flat.params.double() + self.c[self.world.rank])
        return torch.tensor(0.0), torch.tensor(0.0)


@pytest.mark.parametrize("optimizer", ["omd"])
def test_complete_W_gives_centralized_parallel_osg(optimizer):
    """With W = 11^T/M the average x_bar follows centralized OSG on the averaged field:
    z = x - eta g_prev, g = A z + c_bar, x = x - eta g."""
    eta = 0.05
    algo = build(config("complete", optimizer, lr=eta), cls=AffineGame)
    x = algo.flat.params.double().clone()
    g_prev = torch.zeros_like(x)
    ok = True
    for t in range(6):
        algo.step((torch.zeros(1, 2), torch.zeros(1)), t)
        z = x - eta * g_prev
        g_prev = algo.A @ z + algo.c.mean(0)
        x = x - eta * g_prev
        ok &= torch.allclose(algo.averaged_params().double(), x, rtol=1e-5, atol=1e-5)
    assert_all(ok and algo.consensus_distance() > 0, "x_bar follows centralized OSG; x^i still differ")


def test_pure_gossip_reaches_the_mean_at_rate_rho_t():
    """lr = 0: x_k = W^(t k) x_0; the consensus distance is the closed form and <= rho^(2tk) d_0."""
    t, M = 2, COMM.size
    algo = build(config("ring", lr=0.0, rounds=t))
    x0 = algo.flat.params.clone()
    v = torch.linspace(-1, 1, len(x0))
    algo.flat.params.add_(COMM.rank * v)  # coordinate-wise: x^i = x0 + i v
    topo = build_topology("ring", M)
    dev = np.arange(M) - (M - 1) / 2
    d0 = algo.consensus_distance()
    ok = abs(d0 - dev @ dev * float(v @ v) / M) < 1e-6 * d0
    loader = algo.make_loader()
    for k in range(1, 4):
        algo.step(next(loader), k)
        want = (topo.rounds(t * k) - 1 / M) @ np.arange(M)
        dk = algo.consensus_distance()
        ok &= abs(dk - want @ want * float(v @ v) / M) <= 1e-5 * d0 + 1e-9
        ok &= dk <= topo.rho ** (2 * t * k) * d0 * (1 + 1e-5) + 1e-9
    mean = x0 + (M - 1) / 2 * v
    ok &= torch.allclose(algo.averaged_params(), mean, atol=1e-5)
    assert_all(ok, "consensus distance follows (W^tk - 11^T/M) x_0")


def test_avg_and_rank0_samplers_leave_each_ranks_model_alone():
    algo = build(config("ring"))
    run(algo, 3)
    own = algo.flat.params.clone()
    samplers = algo.samplers()
    xs = {name: s(16)[0] for name, s in samplers.items()}
    assert_all(set(xs) == {"", "rank0"} and torch.equal(algo.flat.params, own), "own params restored")
    same = len(set(COMM.allgather(algo.rank0_params().numpy().tobytes())))
    assert_all(same == 1, "every rank evaluates rank 0's parameters")


def test_bad_optimizer_and_backend_without_gossip_are_usage_errors():
    with pytest.raises(UsageError, match="--algo dposg takes --optimizer omd or oadam"):
        resolve_config({"algo": "dposg", "optimizer": "adam"})
    comm = build_communicator(RunConfig().comm, COMM)
    comm.name = "fake"
    base = type(comm).__mro__[1]  # a backend without its own neighbour exchange
    with pytest.raises(UsageError, match="not supported on backend 'fake'"):
        base._neighbor_allgather(comm, torch.zeros(3), torch.zeros(2, 3), build_topology("ring", COMM.size).plan(COMM.rank))
    assert ALGORITHMS.get("dposg") is DPOSG
