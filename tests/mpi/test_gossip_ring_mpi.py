"""Gossip at 3 and 4 ranks (run with -n 3 and -n 4): ring mixing of x = rank in closed form, t rounds
equal W^t, and the deviation from the mean shrinking exactly by rho per round on the 4-ring."""
import numpy as np
import pytest
import torch
from mpi4py import MPI

from helpers import assert_all
from hpcgan.comm import build_communicator
from hpcgan.config import RunConfig
from hpcgan.comm.topology import build_topology

pytestmark = pytest.mark.mpi(min_size=3)
COMM = MPI.COMM_WORLD
M, R = COMM.size, COMM.rank

# x = rank after one ring round: (left + self + right) / 3
RING_OF_RANKS = {3: [1.0, 1.0, 1.0], 4: [4 / 3, 1.0, 2.0, 5 / 3]}


def mix(topology, x, rounds=1):
    comm = build_communicator(RunConfig().comm, COMM)
    plan = build_topology(topology, M).plan(R)
    for _ in range(rounds):
        x = comm.neighbor_mix(x, plan)
    return x, comm


def test_ring_mixing_of_ranks_is_the_closed_form():
    x, comm = mix("ring", torch.full((5,), float(R), dtype=torch.float64))
    want = RING_OF_RANKS.get(M, [(((R - 1) % M) + R + (R + 1) % M) / 3] * M)[R]
    assert_all(torch.allclose(x, torch.tensor(want, dtype=torch.float64)), f"rank {R} mixes to {want}")
    degree = 2  # the ring of 3 is complete: two neighbours either way
    assert_all(comm.bytes_sent == degree * 5 * 8 and comm.calls == 1, "bytes = payload * out-degree")


@pytest.mark.parametrize("topology", ["ring", "torus", "exp2", "complete"])
def test_t_rounds_equal_W_to_the_t(topology):
    x0 = np.random.default_rng(3).standard_normal((M, 7))  # same on every rank; rank i holds row i
    x, _ = mix(topology, torch.tensor(x0[R]), rounds=3)
    want = build_topology(topology, M).rounds(3) @ x0
    assert_all(np.allclose(x.numpy(), want[R], atol=1e-12), f"{topology}: x = (W^3 x0)_i")


def test_deviation_from_the_mean_shrinks_by_rho_per_round():
    topo = build_topology("ring", M)
    x = torch.full((3,), float(R), dtype=torch.float64)
    dev0 = np.linalg.norm(np.arange(M) - (M - 1) / 2)
    comm = build_communicator(RunConfig().comm, COMM)
    ok = True
    for t in range(1, 5):
        x = comm.neighbor_mix(x, topo.plan(R))
        values = np.array(COMM.allgather(float(x[0])))
        dev = np.linalg.norm(values - (M - 1) / 2)
        ok &= abs(values.mean() - (M - 1) / 2) < 1e-12  # the mean is preserved
        if M == 4:  # every non-trivial eigenvalue of the 4-ring is +-1/3: equality
            ok &= abs(dev - topo.rho ** t * dev0) < 1e-12
        ok &= dev <= topo.rho ** t * dev0 + 1e-12
    assert_all(ok, f"deviation <= rho^t * initial (rho = {topo.rho:.4f})")
