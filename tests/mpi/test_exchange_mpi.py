"""The exchange layer under N ranks, on the backend named by HPCGAN_TEST_BACKEND (default mpi;
`make test-mpi` runs this file once per backend): non-blocking primitives, started exchanges equal
to blocking ones for every compressor, buckets equal to one exchange, and overlap under ``delay``."""
import threading
import time

import pytest
import torch
from mpi4py import MPI

from helpers import TEST_BACKEND as BACKEND, assert_all, backend_communicator
from hpcgan.compress import build_compressor
from hpcgan.compress.base import Identity
from hpcgan.compress.qsgd import QSGD
from hpcgan.config import CommConfig
from hpcgan.exchange import BucketedExchange, Exchange, plan_buckets
from hpcgan.gan.flat import FlatParams
from hpcgan.results.timer import PhaseTimer

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD
NAMES = ["identity", "fp16", "bf16", "sign", "topk", "randk", "qsgd", "powersgd"]
SIZES = [100, 3, 2300]


communicator = backend_communicator


def compressor(name: str):
    c = build_compressor(CommConfig(compressor=name, compressor_options={"ratio": 0.1, "levels": 4}))
    if isinstance(c, QSGD):
        c.seed = COMM.rank  # ranks round independently
    return c


def test_non_blocking_primitives_complete_in_order_and_equal_the_blocking_ones():
    comm = communicator()
    p = comm.size
    gate = threading.Event()
    blocker = comm.submit(gate.wait)  # the worker is busy: what follows must queue behind it
    a = torch.full((1000,), float(comm.rank))
    fa = comm.iallreduce_(a, average=False)
    fb = comm.iallgather(torch.arange(comm.rank + 1, dtype=torch.float32))
    queued = not fa.done() and not fb.done()
    gate.set()
    c = torch.full((3,), 1.0)
    comm.allreduce_(c, average=False)  # blocking: waits for everything submitted first
    assert_all(queued, "submitted collectives wait behind the worker's current program")
    assert_all(blocker.done() and fa.done() and fb.done(), "a blocking collective drains the queue first")
    assert_all(torch.all(fa.value() == p * (p - 1) / 2) and torch.all(c == p), "sums")
    assert_all(all(torch.equal(x, torch.arange(r + 1.0)) for r, x in enumerate(fb.value())), "ragged allgather")


@pytest.mark.parametrize("name", NAMES)
def test_a_started_exchange_gives_what_a_blocking_one_gives(name):
    """Same compressor state, same residuals, same Delta, whether steps 4-5 run on the worker or
    here; several steps, so error feedback and warm starts are exercised."""
    comm = communicator()
    started, blocking = Exchange(comm, compressor(name)), Exchange(comm, compressor(name))
    gen = torch.Generator().manual_seed(7 + comm.rank)
    ok = True
    for _ in range(3):
        xs = {k: torch.randn(sum(SIZES), generator=gen) for k in ("a", "b")}
        futures = {k: started.start(k, xs[k].clone(), SIZES) for k in xs}
        for k in xs:
            want = blocking.run(k, xs[k].clone(), SIZES)
            ok &= torch.equal(futures[k].wait(), want)
            ok &= torch.equal(started.memory.residuals.get(k, torch.zeros(0)),
                              blocking.memory.residuals.get(k, torch.zeros(0)))
    assert_all(ok, f"{name}: started = blocking")


class SlowBackward(torch.autograd.Function):
    """Identity forward; its backward sleeps: compute that goes on after the later layers'
    gradients are ready."""

    @staticmethod
    def forward(ctx, x, seconds):
        ctx.seconds = seconds
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        time.sleep(ctx.seconds)
        return grad, None


class TwoLayers(torch.nn.Module):
    def __init__(self, seconds: float = 0.0):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.last, self.seconds = torch.nn.Linear(64, 256), torch.nn.Linear(256, 8), seconds

    def forward(self, x):
        return self.last(SlowBackward.apply(torch.tanh(self.first(x)), self.seconds))


def averaged_gradients(comm, bucket_bytes: int, seconds: float = 0.0, steps: int = 2):
    """Gradients of TwoLayers averaged through a BucketedExchange (identity), each step's timer figures."""
    net = TwoLayers(seconds)
    flat = FlatParams({"net": net})
    timer = PhaseTimer()
    buckets = plan_buckets(flat, ["net"], bucket_bytes)
    ex = BucketedExchange(flat, Exchange(comm, Identity(), False, timer), buckets,
                          lambda b, g: g, flat.grads, timer)
    gen = torch.Generator().manual_seed(comm.rank)
    out = []
    for _ in range(steps):
        x = torch.randn(32, 64, generator=gen)
        ex.arm()
        with timer("compute"):
            grads = torch.autograd.grad(net(x).square().mean(), list(net.parameters()))
        if not ex.hooked:
            torch.cat([g.reshape(-1) for g in grads], out=flat.grads)
        ex.wait()
        out.append((flat.grads.clone(), timer.take()))
    ex.close()
    return len(buckets), out


def test_buckets_give_the_unbucketed_average_bit_for_bit():
    comm = communicator()
    n_one, one = averaged_gradients(comm, 0)
    n_many, many = averaged_gradients(comm, 1024)  # every tensor its own bucket
    assert_all(n_one == 1 and n_many == 4, f"bucket counts {n_one}, {n_many}")
    assert_all(all(torch.equal(a[0], b[0]) for a, b in zip(one, many)), "bucketed = unbucketed")


def test_under_delay_the_early_buckets_travel_while_backward_goes_on():
    """With --net-emulate delay each collective waits its modelled time on the worker. The last
    layer's buckets are ready first; the slow middle of backward (0.8 s) outlasts their
    communication (4 collectives of 2(M-1) x 25 ms each at 2 ranks): it is hidden, and the step
    waits only for what came after."""
    comm = communicator(net_latency=0.025, net_emulate="delay")
    _, steps = averaged_gradients(comm, 1024, seconds=0.8, steps=1)
    t = steps[0][1]
    modelled = 2 * (comm.size - 1) * 0.025  # one bucket's allreduce
    assert_all(t["t_comm_hidden"] >= 1.5 * modelled, f"hidden {t['t_comm_hidden']:.3f} s")
    assert_all(t["t_comm"] < t["t_comm_hidden"] + 3 * modelled, f"exposed {t['t_comm']:.3f} s")
