"""Device staging, exercised on CPU: a communicator told that its transport takes no device type
stages every tensor (CPU ones included) through its reused buffers, the same code path CUDA
tensors take on a host-staged MPI or on gloo. Its results must be bit-identical to the direct
path's, it must count the same bytes, and its buffers must be reused from one step to the next.

Where CUDA exists, the same collectives on CUDA tensors (one GPU per rank, or ranks sharing a GPU)
must give the CPU results bit for bit: host-staged, and CUDA-aware where the MPI library says so.

Runs against HPCGAN_TEST_BACKEND (default mpi), like test_comm_mpi.py.
"""

import pytest
import torch
from mpi4py import MPI

from helpers import TEST_BACKEND as BACKEND, assert_all, backend_communicator
from hpcgan.comm.mpi import cuda_support
from hpcgan.comm.topology import build_topology
from hpcgan.compress import build_compressor
from hpcgan.config import CommConfig
from hpcgan.exchange import collect

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD
SIZES = [100, 3, 230]


communicator = backend_communicator


def communicators():
    """(direct, staged) communicators of the backend under test."""
    direct, staged = communicator(), communicator()
    staged.direct = frozenset()  # the transport takes nothing as it is: stage every tensor
    return direct, staged


def one_step(comm, r: int, device: torch.device = torch.device("cpu"),
             compressors=("identity", "fp16", "sign", "topk")) -> list[torch.Tensor]:
    """Every public collective once, on rank-dependent data placed on ``device``; returns what
    each produced, on the CPU."""
    g = torch.Generator().manual_seed(10 + r)

    def rand(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g).to(device, dtype)

    out = [comm.allreduce_(rand(4, 6), average=True),
           comm.allreduce_(rand(6, 4).t(), average=False),  # not contiguous: staged on every path
           comm.allreduce_(rand(7, dtype=torch.float64)),
           comm.allreduce_(rand(9, dtype=torch.float16), average=False)]  # gathered and summed
    out += comm.allgather(rand(3 + 2 * r))  # ragged: lengths exchanged
    out += comm.allgather(rand(5, dtype=torch.bfloat16), counts=[5] * comm.size)
    out.append(comm.broadcast_(torch.arange(5, device=device) * (r + 1), root=comm.size - 1))
    out.append(comm.broadcast_(rand(3, dtype=torch.bfloat16), root=0))
    for name in compressors:
        c = build_compressor(CommConfig(compressor=name, compressor_options={"ratio": 0.1}))
        payload, ctx = c.compress(torch.randn(sum(SIZES), generator=g), SIZES)
        out.append(collect(comm, c, [t.to(device) for t in payload], ctx))
    if BACKEND == "mpi":
        out.append(comm.neighbor_mix(rand(11), build_topology("ring", comm.size).plan(r)))
    return [t.cpu() for t in out]


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: CUDA tensors are tested where CUDA exists")
def test_cuda_tensors_give_the_cpu_results_bit_for_bit():
    """Ranks drive GPU local_rank mod GPUs (two ranks may share one). Compressors run on the CPU
    here (their GPU bits are compared in tests/unit/test_compress_cuda.py): identity and fp16."""
    device = torch.device("cuda", COMM.rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    want = one_step(communicator(), COMM.rank, compressors=("identity", "fp16"))
    variants = [{}]
    if BACKEND == "mpi":
        variants = [{"cuda_aware_mpi": "no"}] + ([{"cuda_aware_mpi": "yes"}] if cuda_support() else [])
    for kw in variants:
        comm = communicator(**kw)
        got = one_step(comm, COMM.rank, device, compressors=("identity", "fp16"))
        mixed = BACKEND == "mpi"  # the last entry is the gossip mix, whose multiply-adds may fuse on the GPU
        exact = len(want) - mixed
        same = len(got) == len(want) and all(a.dtype == b.dtype and torch.equal(a, b)
                                             for a, b in zip(want[:exact], got[:exact]))
        close = not mixed or torch.allclose(want[-1], got[-1], rtol=1e-6, atol=1e-7)
        assert_all(same and close, f"{BACKEND} {kw}: CUDA results equal the CPU ones")
