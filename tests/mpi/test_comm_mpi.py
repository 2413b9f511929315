"""Communicator backends under N ranks: aggregate of every compressor, bytes, size checks, netem.

Runs against the backend named by HPCGAN_TEST_BACKEND (default mpi); `make test-mpi` runs this
file once per backend. A backend that cannot be built here skips with the reason.
"""
import os

import pytest
import torch
from mpi4py import MPI

from helpers import assert_all
from hpcgan.comm import build_communicator
from hpcgan.compress import build_compressor
from hpcgan.compress.base import local_rounds
from hpcgan.compress.qsgd import QSGD
from hpcgan.config import CommConfig
from hpcgan.errors import UsageError
from hpcgan.exchange import collect

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD
BACKEND = os.environ.get("HPCGAN_TEST_BACKEND", "mpi")
NAMES = ["identity", "fp16", "bf16", "sign", "topk", "topk-torch", "randk", "qsgd", "powersgd"]
SIZES = [100, 3, 2300]  # powersgd: two small tensors dense, one 36 x 64 matrix


def communicator(**kw):
    try:
        return build_communicator(CommConfig(backend=BACKEND, **kw), COMM)
    except UsageError as e:  # the same on every rank (e.g. Horovod not built)
        pytest.skip(f"backend {BACKEND}: {e}")


def rank_input(r: int) -> torch.Tensor:
    return torch.randn(sum(SIZES), generator=torch.Generator().manual_seed(100 + r))


def compressor(name: str, r: int):
    c = build_compressor(CommConfig(compressor=name, ratio=0.1, levels=4))
    if isinstance(c, QSGD):
        c.seed = r  # ranks round independently
    return c


def simulated_aggregate(name: str, size: int) -> torch.Tensor:
    """(1/M) sum_m decompress(payload_m) computed on one process, every round of a multi-round
    compressor included (the sum of two ranks is exact in any order)."""
    cs = [compressor(name, r) for r in range(size)]
    sent = [c.compress(rank_input(r), SIZES) for r, c in enumerate(cs)]
    if not cs[0].summable:
        return sum(c.decompress(p, ctx).double() for c, (p, ctx) in zip(cs, sent)) / size
    payloads = [p for p, _ in sent]
    for r in range(cs[0].rounds):
        if r:
            payloads = [c.next_round(summed, ctx) for c, (_, ctx) in zip(cs, sent)]
        summed = [sum(parts[1:], parts[0].clone()) for parts in zip(*payloads)]
    return cs[0].decompress(summed, sent[0][1]).double() / size


@pytest.mark.parametrize("name", NAMES)
def test_aggregate_is_the_mean_of_every_ranks_decompressed_payload(name):
    comm = communicator()
    c = compressor(name, comm.rank)
    payload, ctx = c.compress(rank_input(comm.rank), SIZES)
    got = collect(comm, c, payload, ctx)
    want = simulated_aggregate(name, comm.size)
    tol = 1e-2 if name in ("fp16", "bf16") else 1e-5  # 16-bit sums round once more
    assert_all(torch.allclose(got.double(), want, rtol=tol, atol=tol), f"{name}: aggregate = mean")
    digests = COMM.allgather(got.numpy().tobytes())
    assert_all(len(set(digests)) == 1, f"{name}: every rank holds the same aggregate")
    fresh = compressor(name, comm.rank)
    wire = sum(fresh.nbytes(p) for p in local_rounds(fresh, *fresh.compress(rank_input(comm.rank), SIZES)))
    assert_all(comm.bytes_sent == wire, f"{name}: bytes_sent {comm.bytes_sent} != payload {wire}")


@pytest.mark.parametrize("name", ["identity", "fp16", "sign", "topk", "randk", "powersgd"])
def test_after_the_first_call_aggregate_is_one_collective(name):
    """Sizes are checked once per payload signature; each later step makes exactly one raw
    collective (one per round: powersgd two), and an allgather is told the lengths instead of
    exchanging them."""
    comm = communicator()
    c = compressor(name, comm.rank)
    raw = []
    for prim in ("_allreduce", "_allgather"):
        inner = getattr(comm, prim)

        def spy(t, *args, _inner=inner, _prim=prim):
            raw.append(_prim)
            return _inner(t, *args)
        setattr(comm, prim, spy)
    one = ["_allreduce"] * c.rounds if name in ("identity", "randk", "powersgd") else ["_allgather"]
    first = collect(comm, c, *c.compress(rank_input(comm.rank), SIZES))
    checks = len(raw) - len(one)
    for _ in range(3):  # a summable payload is summed in place: compress afresh, with a fresh compressor
        c = compressor(name, comm.rank)
        again = collect(comm, c, *c.compress(rank_input(comm.rank), SIZES))
    steady = raw[checks + len(one):]
    assert_all(checks == 1 and steady == one * 3, f"{name}: raw collectives {raw}")
    assert_all(torch.equal(first, again), f"{name}: same aggregate every call")


def test_dense_collectives_closed_form():
    comm = communicator()
    p = comm.size
    t = torch.full((5,), float(comm.rank))
    comm.allreduce_(t, average=False)
    assert_all(torch.all(t == p * (p - 1) / 2), "sum of ranks")
    parts = comm.allgather(torch.arange(comm.rank + 1, dtype=torch.float32))
    assert_all(all(torch.equal(x, torch.arange(r + 1.0)) for r, x in enumerate(parts)), "ragged allgather")
    b = torch.full((3,), float(comm.rank))
    comm.broadcast_(b, root=p - 1)
    assert_all(torch.all(b == p - 1), "broadcast from the last rank")
    h = torch.full((4,), 0.5 * (comm.rank + 1), dtype=torch.float16)
    comm.allreduce_(h, average=False)
    assert_all(torch.all(h == 0.25 * p * (p + 1)), "fp16 sum")


@pytest.mark.parametrize("name", ["identity", "sign"])
def test_mismatched_sizes_raise_on_every_rank(name):
    comm = communicator()
    c = compressor(name, 0)
    x = torch.randn(8 + 8 * comm.rank)
    payload, ctx = c.compress(x, [x.numel()])
    with pytest.raises(UsageError, match="ranks disagree"):
        collect(comm, c, payload, ctx)
    comm.barrier()


def test_network_emulation_is_accounted_not_slept():
    alpha, bw = 1e-3, 1e6
    comm = communicator(net_latency=alpha, net_bandwidth=bw)
    m, n = comm.size, 4000
    comm.allreduce_(torch.ones(n // 4))
    want = 2 * (m - 1) * (alpha + n / (m * bw))
    comm.allgather(torch.ones(n // 4))
    want += (m - 1) * (alpha + n / bw)
    assert_all(abs(comm.t_net_emulated - want) < 1e-12, f"t_net_emulated {comm.t_net_emulated} != {want}")
