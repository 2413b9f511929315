"""Device staging, exercised on CPU: a communicator told that its transport takes no device type
stages every tensor (CPU ones included) through its reused buffers, the same code path CUDA
tensors take on a host-staged MPI or on gloo. Its results must be bit-identical to the direct
path's, it must count the same bytes, and its buffers must be reused from one step to the next.

Runs against HPCGAN_TEST_BACKEND (default mpi), like test_comm_mpi.py.
"""
import os

import pytest
import torch
from mpi4py import MPI

from helpers import assert_all
from hpcgan.comm import build_communicator
from hpcgan.comm.topology import build_topology
from hpcgan.compress import build_compressor
from hpcgan.config import CommConfig
from hpcgan.errors import UsageError

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD
BACKEND = os.environ.get("HPCGAN_TEST_BACKEND", "mpi")
SIZES = [100, 3, 230]


def communicators():
    """(direct, staged) communicators of the backend under test."""
    try:
        direct, staged = (build_communicator(CommConfig(backend=BACKEND), COMM) for _ in range(2))
    except UsageError as e:  # the same on every rank (e.g. Horovod not built)
        pytest.skip(f"backend {BACKEND}: {e}")
    staged.direct = frozenset()  # the transport takes nothing as it is: stage every tensor
    return direct, staged


def one_step(comm, r: int) -> list[torch.Tensor]:
    """Every public collective once, on rank-dependent data; returns what each produced."""
    g = torch.Generator().manual_seed(10 + r)
    out = []
    x = torch.randn(4, 6, generator=g)
    out.append(comm.allreduce_(x, average=True))
    strided = torch.randn(6, 4, generator=g).t()  # not contiguous: staged on every path
    out.append(comm.allreduce_(strided, average=False))
    out.append(comm.allreduce_(torch.randn(7, generator=g, dtype=torch.float64)))
    out.append(comm.allreduce_(torch.randn(9, generator=g).half(), average=False))  # gathered and summed
    out += comm.allgather(torch.randn(3 + 2 * r, generator=g))  # ragged: lengths exchanged
    out += comm.allgather(torch.randn(5, generator=g).bfloat16(), counts=[5] * comm.size)
    out.append(comm.broadcast_(torch.arange(5, dtype=torch.int64) * (r + 1), root=comm.size - 1))
    out.append(comm.broadcast_(torch.randn(3, generator=g).bfloat16(), root=0))
    for name in ("identity", "fp16", "sign", "topk"):
        c = build_compressor(CommConfig(compressor=name, ratio=0.1))
        out.append(comm.aggregate(*c.compress(torch.randn(sum(SIZES), generator=g), SIZES), c))
    if BACKEND == "mpi":
        out.append(comm.neighbor_mix(torch.randn(11, generator=g), build_topology("ring", comm.size).plan(r)))
    return out


def test_staged_collectives_are_bit_identical_to_direct_ones():
    direct, staged = communicators()
    want = one_step(direct, COMM.rank)
    got = one_step(staged, COMM.rank)
    same = len(want) == len(got) and all(
        a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) for a, b in zip(want, got))
    assert_all(same, "staged results equal the direct ones bit for bit")
    assert_all(staged.bytes_sent == direct.bytes_sent and staged.calls == direct.calls, "same accounting")
    assert_all(direct.staging.nbytes() > 0, "the direct path staged only the non-contiguous tensor")
    assert_all(staged.staging.nbytes() > direct.staging.nbytes(), "the staged path ran through the buffers")


def test_staging_buffers_are_reused_across_steps():
    _, staged = communicators()
    one_step(staged, COMM.rank)
    slots = {k: (b.data_ptr(), b.numel()) for k, b in staged.staging._slots.items()}
    for _ in range(2):
        one_step(staged, COMM.rank)
    again = {k: (b.data_ptr(), b.numel()) for k, b in staged.staging._slots.items()}
    assert_all(set(slots) == {"send", "recv"} and again == slots, f"buffers reused: {slots} -> {again}")
    assert_all(staged.staging.pinned == torch.cuda.is_available(), "host buffers pinned exactly when CUDA exists")
