"""DPOSG on one rank: its extrapolated points z_k are exactly the OMD iterates (docs/ALGORITHMS.md 0, 2)."""
import torch
from mpi4py import MPI

from hpcgan.algorithms import ALGORITHMS, TrainContext
from hpcgan.comm import build_communicator
from hpcgan.config import RunConfig
from hpcgan.data import build_dataset
from hpcgan.world import init_world


def build(algo, lr=1e-2):
    cfg = RunConfig().replace(data={"batch_size": 16}, model={"z_dim": 2, "width": 16},
                              optim={"optimizer": "omd", "lr": lr}, algo={"algo": algo, "topology": "ring"})
    world = init_world(MPI.COMM_SELF, set_threads=False)
    return ALGORITHMS.get(algo)(TrainContext(cfg, world, build_communicator(cfg.comm, MPI.COMM_SELF),
                                             build_dataset("mog8")))


def test_single_rank_dposg_extrapolations_are_the_omd_iterates():
    """z_{k+1} = x_hat_k - eta g_k with x_hat_k = z_k + eta g_{k-1} gives
    z_{k+1} = z_k - 2 eta g_k + eta g_{k-1}, g_k = F(z_k): OMD on the same batches."""
    eta = 1e-2
    dposg, omd = build("dposg", eta), build("sync", eta)
    a, b = dposg.make_loader(), omd.make_loader()
    for t in range(8):
        dposg.step(next(a), t)
        omd.step(next(b), t)
        z_next = dposg.flat.params - eta * dposg.d_prev
        assert torch.allclose(z_next, omd.flat.params, atol=1e-6), f"step {t}"
    assert not torch.allclose(dposg.flat.params, omd.flat.params, atol=1e-6)  # x itself is not z
