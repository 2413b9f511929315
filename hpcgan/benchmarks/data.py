"""``hpcgan bench data``: HDF5 loader throughput per rank vs. what a training step consumes.

Every rank builds the real ``--data h5:PATH`` dataset (``--file``, or a synthetic CIFAR-10-shaped
file of random pixels written for the run) and times its loader in both read paths (``cache``: the
file held in memory; ``read``: one sorted h5py read per batch), all ranks at once, as in training.

Consumption is measured in the same run on the same ranks: the compute phase of a ``sync`` step
(:func:`~hpcgan.gan.losses.simultaneous_gradients`: D and G forward + backward on one local batch) for
the registered model ``--model`` (default: the DCGAN of the images' size, ``dcgan32`` or
``dcgan64``, width ``--width``), on the rank's device (its GPU where there is one). Communication, the update and the
host-to-device copy are left out, which only overstates the consumption rate, so the reported
ratio is a lower bound. Target: loader >= 20x consumption on every rank.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ..comm.control import ControlChannel

from ..config import ModelConfig
from ..data.h5 import H5Dataset
from ..data.writer import write_arrays
from ..gan.losses import LOSSES, simultaneous_gradients
from ..gan.models import build_models
from ..world import init_world
from ..errors import UsageParser
from .base import BENCHMARKS

TARGET = 20.0


def synthetic_file(path: Path, n: int) -> Path:
    """CIFAR-10-shaped random images, 10 classes."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % 10
    return write_arrays(path, True, images, labels, [str(i) for i in range(10)],
                        {"source": "synthetic", "split": "bench", "checksum": ""})


def loader_rate(ds: H5Dataset, batch: int, batches: int, comm: ControlChannel) -> float:
    """Images/s of this rank's loader (first batch, which may fill the cache, excluded)."""
    loader = ds.loader(batch, comm.rank, comm.size, seed=0)
    next(loader)
    comm.barrier()
    t0 = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batch * batches / (time.perf_counter() - t0)


def model_name(ds: H5Dataset, args) -> str:
    return args.model or f"dcgan{ds.spec.shape[-1]}"


def consumption_rate(ds: H5Dataset, args, comm: ControlChannel, device: torch.device) -> float:
    """Images/s one rank's sync-step compute phase consumes on this rank's device."""
    G, D = build_models(ds.spec, ModelConfig(model=model_name(ds, args), z_dim=args.z_dim, width=args.width))
    G, D = G.to(device), D.to(device)
    x = next(ds.loader(args.batch_size, comm.rank, comm.size, seed=0))[0].to(device)
    loss, gen = LOSSES.get("ns"), torch.Generator(device=device).manual_seed(comm.rank)
    walls = []
    for i in range(args.steps + 1):
        comm.barrier()
        t0 = time.perf_counter()
        z = torch.randn(len(x), args.z_dim, generator=gen, device=device)
        simultaneous_gradients(G, D, loss, x, z, None, 10.0, gen)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - t0)
    return args.batch_size / float(np.median(walls[1:]))


@BENCHMARKS.register("data")
def bench_data(argv: list[str]) -> int:
    p = UsageParser(prog="hpcgan bench data")
    p.add_argument("--file", help="an HDF5 dataset file (default: a synthetic CIFAR-10-shaped one)")
    p.add_argument("--synthetic", type=int, default=20000, help="images in the synthetic file")
    p.add_argument("--batch-size", type=int, default=64, help="local batch size b")
    p.add_argument("--batches", type=int, default=200, help="timed loader batches per path")
    p.add_argument("--steps", type=int, default=5, help="timed training-step computations")
    p.add_argument("--model", default="", help="registered model to time (default: dcgan32 or dcgan64 by image size)")
    p.add_argument("--width", type=int, default=64, help="base channels of the conv pair")
    p.add_argument("--z-dim", type=int, default=100)
    args = p.parse_args(argv)
    world = init_world()
    comm = world.comm
    tmpdir = None
    if args.file:
        path = Path(args.file)
    else:
        tmpdir = comm.bcast(tempfile.mkdtemp(prefix="hpcgan-bench-data-") if comm.rank == 0 else None)
        path = Path(tmpdir) / "synthetic.h5"
        if comm.rank == 0:
            synthetic_file(path, args.synthetic)
        comm.barrier()
    rates = {mode: loader_rate(H5Dataset(path, cache=(mode == "cache")), args.batch_size, args.batches, comm)
             for mode in ("cache", "read")}
    ds = H5Dataset(path)
    eat = consumption_rate(ds, args, comm, world.device)
    table = comm.gather((rates, eat), root=0)
    if tmpdir and comm.rank == 0:
        path.unlink()
        Path(tmpdir).rmdir()
    ok = True
    if comm.rank == 0:
        model = f"{model_name(ds, args)}, width {args.width}"
        print(f"hpcgan bench data: {path if args.file else f'synthetic {args.synthetic} x {ds.spec.shape}'}, "
              f"{comm.size} rank(s), batch {args.batch_size}, {world.threads} thread(s)/rank, "
              f"consumption on {world.device}")
        print(f"consumption = D+G forward/backward of one sync step ({model}); comm and update excluded")
        print(f"{'rank':>4} {'cache img/s':>12} {'read img/s':>12} {'consumes img/s':>15} "
              f"{'cache/cons':>11} {'read/cons':>10}")
        for r, (rt, e) in enumerate(table):
            print(f"{r:>4} {rt['cache']:>12.0f} {rt['read']:>12.0f} {e:>15.1f} "
                  f"{rt['cache'] / e:>10.0f}x {rt['read'] / e:>9.0f}x")
        default = "cache" if ds.cache else "read"
        worst = min(rt[default] / e for rt, e in table)
        ok = bool(np.isfinite(worst))
        print(f"default path for this file: {default}; worst ratio {worst:.0f}x, target >= {TARGET:.0f}x: "
              f"{'met' if worst >= TARGET else 'NOT met'}")
    return 0 if comm.bcast(ok, root=0) else 1
