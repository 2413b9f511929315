"""DQGAN under N ranks: identity equals single-process OMD on the concatenated batch; ranks stay
bit-identical after every step; one collective per step."""
import pytest
import torch
from mpi4py import MPI

from helpers import assert_all
from hpcgan.algorithms import ALGORITHMS, TrainContext
from hpcgan.comm import build_communicator
from hpcgan.compress.sparse import keep_counts
from hpcgan.config import RunConfig
from hpcgan.data import build_dataset
from hpcgan.world import init_world


pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD
B, Z = 8, 4


def make(name: str, mpi_comm: MPI.Comm, batch: int, **changes):
    cfg = RunConfig().replace(algo={"algo": name}, optim={"optimizer": "omd", "lr": 0.05},
                              data={"batch_size": batch}, model={"width": 16, "z_dim": Z})
    cfg = cfg.replace(**changes) if changes else cfg
    world = init_world(mpi_comm, set_threads=False)
    comm = build_communicator(cfg.comm, mpi_comm)
    return ALGORITHMS.get(cfg.algo.algo)(TrainContext(cfg, world, comm, build_dataset("mog8")))


def global_batch(t: int, M: int):
    """Step t's batch and latents for all M ranks, the same on every rank."""
    g = torch.Generator().manual_seed(1000 + t)
    return torch.randn(M * B, 2, generator=g), torch.randn(M * B, Z, generator=g)


def test_identity_dqgan_equals_single_process_omd_on_the_concatenated_batch():
    M, r = COMM.size, COMM.rank
    dq = make("dqgan", COMM, B)
    ref = make("sync", MPI.COMM_SELF, M * B)       # one process, global batch M*B, dense OMD
    assert_all(torch.equal(dq.flat.params, ref.flat.params), "same x_0")
    for t in range(6):
        x, z = global_batch(t, M)
        y = torch.zeros(M * B, dtype=torch.int64)
        dq.latent = lambda n, gen, z=z: z[r * B:(r + 1) * B]
        ref.latent = lambda n, gen, z=z: z
        stats = dq.step((x[r * B:(r + 1) * B], y[:B]), t)
        ref.step((x, y), t)
        digests = COMM.allgather(dq.flat.params.numpy().tobytes())
        assert_all(len(set(digests)) == 1, f"ranks differ after step {t}")
        assert_all(torch.allclose(dq.flat.params, ref.flat.params, rtol=1e-5, atol=1e-6),
                   f"DQGAN(identity) departs from OMD on the concatenated batch at step {t}")
    assert_all(stats.bytes_sent == 4 * len(dq.flat), "identity sends the dense fp32 buffer once")
    assert_all(min(stats.t_compute, stats.t_compress, stats.t_comm, stats.t_update) > 0, "all phases timed")


@pytest.mark.parametrize("variant, ef", [("A", True), ("B", False)])
def test_lossy_dqgan_ranks_stay_bit_identical_with_one_collective_per_step(variant, ef):
    dq = make("dqgan", COMM, B, comm={"compressor": "topk", "ratio": 0.05, "error_feedback": ef},
              algo={"algo": "dqgan", "dqgan_variant": variant})
    loader = dq.make_loader()
    sent0 = dq.comm.bytes_sent  # after the initial broadcast of x_0
    for t in range(5):
        calls = dq.comm.calls
        dq.step(next(loader), t)
        assert_all(dq.comm.calls - calls == 1, f"one collective in step {t}")
        digests = COMM.allgather(dq.flat.params.numpy().tobytes())
        assert_all(len(set(digests)) == 1, f"ranks differ after step {t}")
    k = sum(sum(keep_counts(0.05, dq.flat.tensor_sizes(n))) for n in dq.flat.names)  # top-k of each tensor
    assert_all(dq.comm.bytes_sent - sent0 == 5 * 8 * k, "top-k bytes on the wire: fp32 value + int32 index per kept entry")


def test_sync_in_buckets_either_backward_order_trains_bit_identically_to_one_exchange():
    """sync with every tensor its own bucket, D's or G's gradients first, and with one exchange
    after backward: the same parameters after every step (at 2 ranks a + b whatever the chunking;
    at more, the MPI library may sum another message size in another order)."""
    runs = {key: make("sync", COMM, B, comm={"bucket_mb": mb, "backward_order": order})
            for key, (mb, order) in {"one": (0.0, "dg"), "one-gd": (0.0, "gd"), "dg": (1e-6, "dg"),
                                     "gd": (1e-6, "gd")}.items()}
    assert_all([len(runs[k].exchange.buckets) == 1 for k in ("one", "one-gd")] == [True, True]
               and len(runs["gd"].exchange.buckets) > 4, "--bucket-mb 0 is one bucket in either order")
    for order, nets in (("dg", "DG"), ("gd", "GD")):  # one tensor per bucket: each network last to first
        idx = runs[order].flat.indices
        sent = [i for b in runs[order].exchange.buckets for i in b.params]
        assert_all(sent == [i for net in nets for i in reversed(idx[net])], f"{order}: the order buckets leave in")
    loaders = {k: a.make_loader() for k, a in runs.items()}
    for t in range(3):
        for k, a in runs.items():
            a.step(next(loaders[k]), t)
        same = all(torch.equal(runs["one"].flat.params, a.flat.params) for a in runs.values())
        if COMM.size == 2:
            assert_all(same, f"bit-identical after step {t}")
        else:
            assert_all(all(torch.allclose(runs["one"].flat.params, a.flat.params, atol=1e-6) for a in runs.values()),
                       f"equal to rounding after step {t}")
