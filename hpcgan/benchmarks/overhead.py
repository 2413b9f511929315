"""``hpcgan bench overhead``: hpcgan's ``sync`` step against the same step in plain PyTorch, on the
same model, batch and data, in one run; prints hpcgan time / plain time per case (goal <= 1.05).

For each case DATA:MODEL (default ``mog8:mlp`` and ``digits:dcgan32``), on the job's ranks:

* hpcgan: the :class:`~hpcgan.algorithms.sync.Sync` algorithm built as the Trainer builds it (config
  resolved for ``--algo sync``, seeds, dataset, ``--backend`` communicator, loader), and per step
  what ``Trainer.run`` does per step: ``algo.step(batch)`` (FlatParams, phase timers, byte
  accounting, one allreduce of the flat gradient, Adam), ``recorder.record(stats)`` (an HDF5
  results file in a temporary folder, gathered every ``--flush-every`` rows) and ``after_step``.
* plain: the same G and D (built from the same seed), the same loss and latent stream, gradients
  from the same :func:`~hpcgan.gan.losses.simultaneous_gradients`, flattened with ``torch.cat``,
  summed by one allreduce on the same transport (mpi4py ``Allreduce`` for ``--backend mpi``,
  ``torch.distributed.all_reduce`` for ``torch``), divided by M and handed to a
  ``torch.optim.Adam`` with the same settings; no timers, no recorder.

Every iteration draws one batch from hpcgan's loader and runs both steps on it, in alternating
order; after ``--warmup`` iterations the per-step times of ``--steps`` iterations are taken, each
iteration's the slowest rank's, and their medians compared. Both start from the same weights and
apply the same averaged gradients, so their parameters must agree bit for bit at the end: the
table says so, as a check that the two do the same arithmetic.

HDF5 (``--out``, rank 0): attrs world_size, backend, machine, created_at; ``/overhead/{case,
steps, t_hpcgan, t_plain, ratio, same_params}`` [s] and ``/targets`` (:mod:`.targets`).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.distributed as dist
from mpi4py import MPI

from ..algorithms import ALGORITHMS, TrainContext
from ..algorithms.base import resolve_config
from ..comm import build_communicator
from ..config import RunConfig
from ..data import Dataset, build_dataset
from ..errors import UsageError, UsageParser
from ..gan.losses import LOSSES, simultaneous_gradients
from ..gan.models import build_models, latent
from ..info import machine
from ..results.recorder import Recorder, utc_now
from ..train import run_attrs
from ..world import World, init_world, rank_seed, seed_everything
from .base import BENCHMARKS
from .targets import Target, write_targets

GOAL = 1.05


class PlainStep:
    """The sync step written as a PyTorch user would: modules, autograd, one allreduce, Adam."""

    def __init__(self, cfg: RunConfig, dataset: Dataset, world: World, backend: str):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(rank_seed(cfg.run.seed, 0, "init"))
            self.G, self.D = build_models(dataset.spec, cfg.model, False)
        self.params = [*self.G.parameters(), *self.D.parameters()]
        o = cfg.optim
        self.opt = torch.optim.Adam(self.params, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
        self.noise = torch.Generator().manual_seed(rank_seed(cfg.run.seed, world.rank, "noise"))
        self.loss, self.cfg, self.world, self.backend = LOSSES.get(cfg.model.loss), cfg, world, backend

    def allreduce(self, flat: torch.Tensor) -> None:
        if self.backend == "mpi":
            self.world.comm.Allreduce(MPI.IN_PLACE, flat.numpy(), op=MPI.SUM)
        else:
            dist.all_reduce(flat)

    def __call__(self, batch) -> None:
        x, _ = batch
        z = latent(x.shape[0], self.cfg.model.z_dim, self.noise)
        g_G, g_D, _, _ = simultaneous_gradients(self.G, self.D, self.loss, x, z, None, self.cfg.model.gp_weight,
                                                self.noise)
        grads = [*g_G, *g_D]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.allreduce(flat)
        flat /= self.world.size
        for p, g in zip(self.params, flat.split([g.numel() for g in grads])):
            p.grad = g.view_as(p)
        self.opt.step()


def run_case(case: str, args, world: World, folder: Path) -> dict:
    data, model = case.split(":", 1)
    cfg = resolve_config({"algo": "sync", "data": data, "model": model, "backend": args.backend,
                          "batch_size": args.batch_size, "flush_every": args.flush_every,
                          "out": str(folder / f"{data}-{model}.h5"), "force": True})
    seed_everything(cfg.run.seed, world.rank)
    dataset = build_dataset(cfg.data.data)
    comm = build_communicator(cfg.comm, world.comm)
    algo = ALGORITHMS.get("sync")(TrainContext(cfg, world, comm, dataset))
    loader = algo.make_loader()
    recorder = Recorder(cfg.run.out, world.comm, run_attrs(cfg, world, algo), cfg.run.flush_every, "force")
    plain = PlainStep(cfg, dataset, world, args.backend)

    def hpcgan_step(batch, t):
        stats = algo.step(batch, t)
        stats.step = t
        recorder.record(stats)
        algo.after_step(recorder, t)

    times = np.zeros((args.warmup + args.steps, 2))
    for t in range(args.warmup + args.steps):
        batch = next(loader)
        for j in ((0, 1) if t % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            hpcgan_step(batch, t) if j == 0 else plain(batch)
            times[t, j] = time.perf_counter() - t0
    recorder.close(finished=True)
    times = times[args.warmup:]
    world.comm.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    same = torch.equal(algo.flat.params, torch.cat([p.detach().reshape(-1) for p in plain.params]))
    same = all(world.comm.allgather(same))
    t_hpcgan, t_plain = (float(np.median(times[:, j])) for j in (0, 1))
    return {"case": case, "steps": args.steps, "t_hpcgan": t_hpcgan, "t_plain": t_plain,
            "ratio": t_hpcgan / t_plain, "same_params": int(same)}


@BENCHMARKS.register("overhead")
def bench_overhead(argv: list[str]) -> int:
    p = UsageParser(prog="hpcgan bench overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="mog8:mlp,digits:dcgan32", help="comma list of DATA:MODEL")
    p.add_argument("--backend", default="mpi", choices=("mpi", "torch"), help="transport of both steps")
    p.add_argument("--steps", type=int, default=40, help="timed iterations per case (each runs both steps)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--flush-every", type=int, default=50, help="the recorder's flush interval (as in training)")
    p.add_argument("--out", default="", help="HDF5 file for the results (rank 0 writes)")
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    if not cases or any(c.count(":") != 1 for c in cases):
        raise UsageError(f"--cases takes DATA:MODEL pairs, e.g. mog8:mlp,digits:dcgan32; got '{args.cases}'")
    if args.steps < 1 or args.warmup < 0:
        raise UsageError("--steps must be >= 1 and --warmup >= 0")
    world = init_world(MPI.COMM_WORLD)
    folder = Path(world.comm.bcast(tempfile.mkdtemp(prefix="hpcgan-overhead-") if world.rank == 0 else None))
    try:
        rows = [run_case(c, args, world, folder) for c in cases]
    finally:
        world.comm.Barrier()
        if world.rank == 0:
            shutil.rmtree(folder, ignore_errors=True)
    if world.rank == 0:
        targets = [Target(f"sync step / plain PyTorch step on {r['case']} at {world.size} ranks", r["ratio"], hi=GOAL)
                   for r in rows]
        print(f"hpcgan bench overhead: {world.size} rank(s), backend {args.backend}, {world.threads} thread(s) per "
              f"rank, batch {args.batch_size}; median step time over {args.steps} iterations after {args.warmup}, "
              "slowest rank; both steps on the same batch, alternating")
        print(f"{'case':>16} {'hpcgan[ms]':>11} {'plain[ms]':>10} {'ratio':>7} {'same params':>12}")
        for r in rows:
            print(f"{r['case']:>16} {1e3 * r['t_hpcgan']:11.3f} {1e3 * r['t_plain']:10.3f} {r['ratio']:7.3f} "
                  f"{'yes' if r['same_params'] else 'NO':>12}")
        for t in targets:
            print(t.line())
        if args.out:
            with h5py.File(args.out, "w") as f:
                f.attrs.update(world_size=world.size, backend=args.backend, machine=machine(world.device),
                               created_at=utc_now())
                g = f.create_group("overhead")
                g.create_dataset("case", data=np.array([r["case"] for r in rows], dtype=h5py.string_dtype()))
                for key in ("steps", "t_hpcgan", "t_plain", "ratio", "same_params"):
                    g.create_dataset(key, data=np.array([r[key] for r in rows]))
                write_targets(f, targets)
    return 0
