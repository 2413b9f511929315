"""hpcgan compressors outside hpcgan, at N ranks: the DDP communication hook (gloo) and the Horovod
Compression train a small model, as the README examples do; ranks stay identical."""
import threading

import pytest
import torch
import torch.distributed as dist
from mpi4py import MPI

from helpers import assert_all
from hpcgan.comm.torchdist import init_process_group
from hpcgan.compress import build_compressor
from hpcgan.compress.hooks import CompressionHook, HorovodCompression, ProcessGroupCommunicator, compression_hook
from hpcgan.config import CommConfig
from hpcgan.exchange import Exchange

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD


def model() -> torch.nn.Module:
    torch.manual_seed(0)  # the same initial weights on every rank
    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                               torch.nn.Linear(64, 1))


def shard(rank: int, n: int = 256):
    """This rank's regression data: y = sin(x w) for a w shared by all ranks."""
    w = torch.randn(16, 1, generator=torch.Generator().manual_seed(42))
    x = torch.randn(n, 16, generator=torch.Generator().manual_seed(rank))
    return x, torch.sin(x @ w)


def train(net: torch.nn.Module, opt: torch.optim.Optimizer, steps: int) -> tuple[float, float]:
    x, y = shard(COMM.rank)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    first, last = COMM.allreduce(losses[0]) / COMM.size, COMM.allreduce(losses[-1]) / COMM.size
    return first, last  # the loss over every rank's data


def same_on_every_rank(net: torch.nn.Module) -> bool:
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    return len(set(COMM.allgather(flat.numpy().tobytes()))) == 1


@pytest.fixture(scope="module")
def gloo():
    init_process_group(COMM)


@pytest.mark.parametrize("name", ["sign", "topk", "randk", "qsgd", "powersgd", "fp16"])
def test_ddp_hook_trains_with_error_feedback(gloo, name):
    net = torch.nn.parallel.DistributedDataParallel(model())
    compressor = build_compressor(CommConfig(compressor=name, compressor_options={"ratio": 0.25, "levels": 16}))
    state = CompressionHook(compressor)
    net.register_comm_hook(state, compression_hook)
    first, last = train(net, torch.optim.Adam(net.parameters(), lr=1e-2), 100)
    assert_all(last < 0.75 * first, f"{name}: loss {first:.4f} -> {last:.4f}")
    assert_all(same_on_every_rank(net), f"{name}: ranks hold the same weights")
    if name not in ("fp16",):
        assert_all(any(float(e.abs().max()) > 0 for e in state.memory.residuals.values()), f"{name}: residuals kept")


def test_ddp_hook_returns_a_pending_future_so_ddp_overlaps(gloo):
    """The hook hands DDP the exchange's future before the bucket's collectives run: with the
    exchange's transport held busy, every future the hook returns is still pending, and DDP's
    backward completes once the transport is let go (its buckets then average correctly)."""
    state = CompressionHook(build_compressor(CommConfig(compressor="sign")))
    state.exchange = Exchange(ProcessGroupCommunicator(), state.compressor, state.error_feedback)
    pending = []

    def hook(s, bucket):
        fut = compression_hook(s, bucket)
        pending.append(not fut.done())
        return fut

    net = torch.nn.parallel.DistributedDataParallel(model(), bucket_cap_mb=0.01)
    net.register_comm_hook(state, hook)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    train(net, opt, 2)  # DDP rebuilds its buckets after the first step: several from then on
    pending.clear()
    gate = threading.Event()
    state.exchange.comm.submit(gate.wait)
    threading.Timer(2.0, gate.set).start()  # let the transport go once backward has called every hook
    train(net, opt, 1)
    first, last = train(net, opt, 30)
    buckets = len(pending) // 31
    assert_all(buckets >= 2 and all(pending[:buckets]), f"gated step's futures pending: {pending[:buckets]}")
    assert_all(same_on_every_rank(net) and last < first, f"trains: loss {first:.4f} -> {last:.4f}")


def test_ddp_hook_with_identity_is_ddps_own_averaging(gloo):
    nets = []
    for hook in (False, True):
        net = torch.nn.parallel.DistributedDataParallel(model())
        if hook:
            net.register_comm_hook(CompressionHook(build_compressor(CommConfig(compressor="identity"))),
                                   compression_hook)
        train(net, torch.optim.SGD(net.parameters(), lr=0.05), 5)
        nets.append(torch.cat([p.detach().reshape(-1) for p in net.parameters()]))
    assert_all(torch.allclose(nets[0], nets[1], rtol=1e-5, atol=1e-6), "identity hook = DDP allreduce mean")


@pytest.mark.parametrize("name, ef, goal", [("fp16", True, 0.75), ("randk", False, 0.75), ("randk", True, 0.85)])
def test_horovod_compression_trains(name, ef, goal):
    """Measured here (2 ranks, 100 Adam steps): random-k 25% reaches 0.59 of the first loss
    without error feedback and 0.77 with it -- Adam's normalisation and a residual released in
    bursts do not mix well on this problem -- so each arm is held to what it does."""
    try:
        import horovod.torch as hvd
    except ImportError as e:  # the same on every rank
        pytest.skip(f"Horovod is not installed here ({e})")
    if not hvd.is_initialized():
        hvd.init(comm=COMM)
    net = model()
    compression = HorovodCompression(build_compressor(CommConfig(compressor=name, compressor_options={"ratio": 0.25})),
                                     named_parameters=net.named_parameters(), error_feedback=ef)
    opt = hvd.DistributedOptimizer(torch.optim.Adam(net.parameters(), lr=1e-2),
                                   named_parameters=net.named_parameters(), compression=compression)
    first, last = train(net, opt, 100)
    assert_all(last < goal * first, f"{name}: loss {first:.4f} -> {last:.4f}")
    assert_all(same_on_every_rank(net), f"{name}: ranks hold the same weights")
    residuals = compression.memory.residuals
    want = {n for n, _ in net.named_parameters()} if ef else set()
    assert_all(set(residuals) == want, f"{name}: a residual per parameter with error feedback, else none")
    if name == "randk" and ef:
        assert_all(any(float(e.abs().max()) > 0 for e in residuals.values()), "random-k leaves residuals")


def test_horovod_compression_refuses_what_horovod_cannot_sum():
    for name in ("topk", "sign", "powersgd"):
        with pytest.raises(Exception, match="summable"):
            HorovodCompression(build_compressor(CommConfig(compressor=name)))
    assert dist.is_available()
