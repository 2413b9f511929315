"""Communicator backends under N ranks: aggregate of every compressor, bytes, size checks, netem.

Runs against the backend named by HPCGAN_TEST_BACKEND (default mpi); `make test-mpi` runs this
file once per backend. A backend that cannot be built here skips with the reason.
"""

import pytest
import torch
from mpi4py import MPI

from helpers import TEST_BACKEND as BACKEND, assert_all, backend_communicator
from hpcgan.comm.base import Communicator
from hpcgan.compress import COMPRESSORS, build_compressor
from hpcgan.compress.base import local_rounds
from hpcgan.compress.qsgd import QSGD
from hpcgan.config import CommConfig
from hpcgan.errors import UsageError
from hpcgan.exchange import collect

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD
NAMES = COMPRESSORS.names()
SIZES = [100, 3, 2300]  # powersgd: two small tensors dense, one 36 x 64 matrix


communicator = backend_communicator


def rank_input(r: int) -> torch.Tensor:
    return torch.randn(sum(SIZES), generator=torch.Generator().manual_seed(100 + r))


def compressor(name: str, r: int):
    c = build_compressor(CommConfig(compressor=name, compressor_options={"ratio": 0.1, "levels": 4}))
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
    for prim in ("_allreduce", "_allreduce_half", "_allgather"):
        inner = getattr(comm, prim)

        def spy(t, *args, _inner=inner, _prim=prim):
            raw.append(_prim)
            return _inner(t, *args)
        setattr(comm, prim, spy)
    one = {"identity": ["_allreduce"], "randk": ["_allreduce"], "powersgd": ["_allreduce"] * 2,
           "fp16": ["_allreduce_half"]}.get(name, ["_allgather"])
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
    before = comm.bytes_sent
    rows = comm.allgather_rows(torch.full((2, 3), comm.rank, dtype=torch.int16))
    assert_all(rows.shape == (p, 6) and torch.equal(rows, torch.arange(p, dtype=torch.int16).view(p, 1).expand(p, 6)),
               "allgather_rows: row r is rank r's tensor, flattened")
    assert_all(comm.bytes_sent - before == (12 if p > 1 else 0), "allgather_rows counts this rank's 12 bytes")
    b = torch.full((3,), float(comm.rank))
    comm.broadcast_(b, root=p - 1)
    assert_all(torch.all(b == p - 1), "broadcast from the last rank")
    h = torch.full((4,), 0.5 * (comm.rank + 1), dtype=torch.float16)
    comm.allreduce_(h, average=False)
    assert_all(torch.all(h == 0.25 * p * (p + 1)), "fp16 sum")


def half_input(r: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Rank r's n values: random over many octaves, then (rank 0 / rank 1) NaN / 1, +inf / -inf
    (NaN), max / max (overflow to inf), the smallest subnormal twice, a subnormal and its negative."""
    g = torch.Generator().manual_seed(7 * n + r)
    x = (torch.randn(n, generator=g) * torch.exp(4 * torch.randn(n, generator=g))).to(dtype)
    big, tiny = torch.finfo(dtype).max, torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps
    special = [float("nan") if r == 0 else 1.0, float("inf") if r == 0 else -float("inf"), big, tiny,
               tiny if r == 0 else -tiny]
    k = min(n, len(special))
    x[:k] = torch.tensor(special[:k], dtype=dtype)
    return x


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_allreduce_is_the_rounded_sum_on_every_rank(dtype):
    """fp16 / bf16 sums: the same bits on every rank; at 2 ranks the correctly rounded sum (the fp64
    sum rounded once), so every backend agrees; at more ranks each partial sum rounds once more, within
    the usual bound |error| <= (M - 1) u sum_m |x_m| (u the unit roundoff), up to subnormal spacing."""
    comm = communicator()
    for n in (1, 5, 33, 4097, 100_003):  # odd lengths: the kernels' scalar tails and MPI's chunking
        x = half_input(comm.rank, n, dtype)
        got = comm.allreduce_(x.clone(), average=False)
        inputs = [half_input(r, n, dtype) for r in range(comm.size)]
        exact = sum(i.double() for i in inputs)
        nan = got.isnan()
        bits = torch.where(nan, torch.zeros_like(got), got).view(torch.int16)
        mine = torch.cat([nan.view(torch.int8), bits.view(torch.int8)]).numpy().tobytes()
        assert_all(len(set(COMM.allgather(mine))) == 1, f"{dtype} n={n}: every rank the same bits")
        assert_all(torch.equal(nan, exact.isnan()), f"{dtype} n={n}: NaN exactly where the sum is NaN")
        gathered = x.clone()
        Communicator._allreduce_half(comm, gathered)  # the default: gathered, summed in rank order
        if comm.size == 2:
            assert_all(torch.equal(gathered.isnan(), nan) and torch.equal(gathered[~nan], got[~nan]),
                       f"{dtype} n={n}: the backend's sum = the gathered sum")
        if comm.size == 2:
            assert_all(torch.equal(bits[~nan], exact.to(dtype)[~nan].view(torch.int16)),
                       f"{dtype} n={n}: the correctly rounded sum")
        else:
            info = torch.finfo(dtype)
            magnitude = sum(i.double().abs() for i in inputs)
            finite = magnitude < info.max / 2
            bound = comm.size * (info.eps * magnitude + info.smallest_normal * info.eps)  # M - 1 roundings
            err = (got.double() - exact).abs()
            assert_all(bool((err <= bound)[finite].all()), f"{dtype} n={n}: within the rounding error bound")


def test_half_allreduce_is_one_allreduce():
    """An fp16 sum is accounted as one allreduce of its 2-byte values (not an allgather)."""
    net = communicator(net_latency=1e-3, net_bandwidth=1e6)
    before = net.t_net_emulated
    net.allreduce_(torch.ones(1000, dtype=torch.float16))
    assert_all(net.t_net_emulated - before == pytest.approx(net.net.allreduce(2000, net.size)), "allreduce model")


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
