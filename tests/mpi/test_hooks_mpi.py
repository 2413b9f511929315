"""hpcgan compressors outside hpcgan, at N ranks: the DDP communication hook (gloo) and the Horovod
Compression train a small model, as the README examples do; ranks stay identical."""
import pytest
import torch
import torch.distributed as dist
from mpi4py import MPI

from helpers import assert_all
from hpcgan.comm.torchdist import init_process_group
from hpcgan.compress import build_compressor
from hpcgan.compress.hooks import CompressionHook, HorovodCompression, compression_hook
from hpcgan.config import CommConfig

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
        assert_all(any(float(e.abs().max()) > 0 for e in state.ef.residuals.values()), f"{name}: residuals kept")


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


@pytest.mark.parametrize("name", ["fp16", "randk"])
def test_horovod_compression_trains(name):
    try:
        import horovod.torch as hvd
    except ImportError as e:  # the same on every rank
        pytest.skip(f"Horovod is not installed here ({e})")
    if not hvd.is_initialized():
        hvd.init(comm=COMM)
    net = model()
    compression = HorovodCompression(build_compressor(CommConfig(compressor=name, compressor_options={"ratio": 0.25})))
    opt = hvd.DistributedOptimizer(torch.optim.Adam(net.parameters(), lr=1e-2),
                                   named_parameters=net.named_parameters(), compression=compression)
    first, last = train(net, opt, 100)
    assert_all(last < 0.75 * first, f"{name}: loss {first:.4f} -> {last:.4f}")
    assert_all(same_on_every_rank(net), f"{name}: ranks hold the same weights")


def test_horovod_compression_refuses_what_horovod_cannot_sum():
    for name in ("topk", "sign", "powersgd"):
        with pytest.raises(Exception, match="summable"):
            HorovodCompression(build_compressor(CommConfig(compressor=name)))
    assert dist.is_available()
