"""``hpcgan bench overhead``: hpcgan's ``sync`` step against the same step written as a PyTorch
user would (plain, torch DDP, Horovod's DistributedOptimizer: :mod:`.steps`), on the same model,
batch and data, in one run; prints hpcgan time / peer time per case and peer (goal <= 1.05 each).

For each case DATA:MODEL (default ``mog8:mlp`` and ``digits:dcgan32``), on the job's ranks:

* hpcgan: the :class:`~hpcgan.algorithms.sync.Sync` algorithm built as the Trainer builds it (config
  resolved for ``--algo sync``, seeds, dataset, ``--backend`` communicator, loader), and per step
  what ``Trainer.run`` does per step: ``algo.step(batch)`` (FlatParams, phase timers, byte
  accounting, one allreduce of the flat gradient, Adam), ``recorder.record(stats)`` (an HDF5
  results file in a temporary folder, gathered every ``--flush-every`` rows) and ``after_step``.
* each peer of ``--peers`` (:mod:`.steps`): the same G and D (built from the same seed), the same
  loss and latent stream, its own way of averaging the gradients, ``torch.optim.Adam`` with the same
  settings; no timers, no recorder. A peer that cannot run here (Horovod not built) is skipped with
  the reason.

Fairness: every iteration draws one batch from hpcgan's loader and runs every step on it (hpcgan's
and each peer's), in an order rotated by one each iteration, so each step runs in each position
equally often; all in one process, so with the same threads. The first ``--warmup`` iterations
(the same for all) are not timed; of the next ``--steps``, each iteration's time per step is the
slowest rank's, and their medians are compared. All start from the same weights and apply the same
averaged gradients, so their parameters must agree bit for bit at the end: the table says so, as a
check that they do the same arithmetic.

HDF5 (``--out``, rank 0): attrs world_size, backend, threads, machine, created_at; ``/overhead/{case,
peer, label, steps, t_hpcgan, t_peer, ratio, same_params}`` [s], one row per (case, peer), and
``/targets`` (:mod:`.targets`).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from ..algorithms import ALGORITHMS, TrainContext
from ..algorithms.base import resolve_config
from ..comm import build_communicator
from ..config import RunConfig
from ..data import Dataset, build_dataset
from ..errors import UsageError, UsageParser
from ..info import machine
from ..results.recorder import Recorder, utc_now
from ..train import run_attrs
from ..world import World, init_world, seed_everything
from .base import BENCHMARKS
from .steps import PEERS
from .targets import Target, write_targets

GOAL = 1.05


def build_peers(names: list[str], cfg: RunConfig, dataset: Dataset, world: World, backend: str):
    """The peers that can run here, and why each other one cannot (the same on every rank)."""
    built, skipped = {}, {}
    for name in names:
        try:
            built[name] = PEERS.get(name)(cfg, dataset, world, backend)
        except UsageError as e:
            skipped[name] = str(e)
    return built, skipped


def run_case(case: str, args, world: World, folder: Path) -> tuple[list[dict], dict[str, str]]:
    """One row per peer of ``case``: medians of hpcgan's step and the peer's; and the skipped peers."""
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
    peers, skipped = build_peers(args.peers, cfg, dataset, world, args.backend)

    def hpcgan_step(batch, t):
        stats = algo.step(batch, t)
        stats.step = t
        recorder.record(stats)
        algo.after_step(recorder, t)

    steps = [lambda batch, t: hpcgan_step(batch, t), *(lambda batch, t, p=p: p(batch) for p in peers.values())]
    times = np.zeros((args.warmup + args.steps, len(steps)))
    for t in range(args.warmup + args.steps):
        batch = next(loader)
        for j in np.roll(np.arange(len(steps)), -t):  # each step in each position equally often
            t0 = time.perf_counter()
            steps[j](batch, t)
            times[t, j] = time.perf_counter() - t0
    recorder.close(finished=True)
    times = times[args.warmup:]
    world.comm.allreduce_(times, op="max")
    medians = np.median(times, axis=0)
    rows = []
    for j, (name, peer) in enumerate(peers.items(), start=1):
        same = torch.equal(algo.flat.params, torch.cat([p.detach().reshape(-1) for p in peer.params()]))
        rows.append({"case": case, "peer": name, "label": peer.label, "steps": args.steps,
                     "t_hpcgan": float(medians[0]), "t_peer": float(medians[j]),
                     "ratio": float(medians[0] / medians[j]), "same_params": int(all(world.comm.allgather(same)))})
    return rows, skipped


@BENCHMARKS.register("overhead")
def bench_overhead(argv: list[str]) -> int:
    p = UsageParser(prog="hpcgan bench overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="mog8:mlp,digits:dcgan32", help="comma list of DATA:MODEL")
    p.add_argument("--peers", default=",".join(PEERS.names()),
                   help=f"comma list of peer steps to compare with: {', '.join(PEERS.names())} (default: all; "
                        "one that cannot run here is skipped with the reason)")
    p.add_argument("--backend", default="mpi", choices=("mpi", "torch"), help="transport of hpcgan's and the plain step")
    p.add_argument("--steps", type=int, default=40, help="timed iterations per case (each runs every step)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--flush-every", type=int, default=50, help="the recorder's flush interval (as in training)")
    p.add_argument("--out", default="", help="HDF5 file for the results (rank 0 writes)")
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    if not cases or any(c.count(":") != 1 for c in cases):
        raise UsageError(f"--cases takes DATA:MODEL pairs, e.g. mog8:mlp,digits:dcgan32; got '{args.cases}'")
    args.peers = [n for n in args.peers.split(",") if n]
    if not args.peers:
        raise UsageError(f"--peers takes a comma list of {', '.join(PEERS.names())}")
    for name in args.peers:
        PEERS.get(name)  # unknown names fail before any collective
    if args.steps < 1 or args.warmup < 0:
        raise UsageError("--steps must be >= 1 and --warmup >= 0")
    world = init_world()
    folder = Path(world.comm.bcast(tempfile.mkdtemp(prefix="hpcgan-overhead-") if world.rank == 0 else None))
    rows, skipped = [], {}
    try:
        for c in cases:
            case_rows, case_skipped = run_case(c, args, world, folder)
            rows += case_rows
            skipped.update(case_skipped)
    finally:
        world.comm.barrier()
        if world.rank == 0:
            shutil.rmtree(folder, ignore_errors=True)
    if world.rank == 0:
        targets = [Target(f"sync step / {r['label']} step on {r['case']} at {world.size} ranks", r["ratio"], hi=GOAL)
                   for r in rows]
        print(f"hpcgan bench overhead: {world.size} rank(s), backend {args.backend}, {world.threads} thread(s) per "
              f"rank, batch {args.batch_size}; median step time over {args.steps} iterations after {args.warmup}, "
              "slowest rank; every step on the same batch, in rotating order")
        for name, why in skipped.items():
            print(f"peer {name} skipped: {why}")
        print(f"{'case':>16} {'peer':>8} {'hpcgan[ms]':>11} {'peer[ms]':>10} {'ratio':>7} {'same params':>12}")
        for r in rows:
            print(f"{r['case']:>16} {r['peer']:>8} {1e3 * r['t_hpcgan']:11.3f} {1e3 * r['t_peer']:10.3f} "
                  f"{r['ratio']:7.3f} {'yes' if r['same_params'] else 'NO':>12}")
        for t in targets:
            print(t.line())
        if args.out:
            with h5py.File(args.out, "w") as f:
                f.attrs.update(world_size=world.size, backend=args.backend, machine=machine(world.device),
                               threads=world.threads, created_at=utc_now())
                g = f.create_group("overhead")
                for key in ("case", "peer", "label"):
                    g.create_dataset(key, data=np.array([r[key] for r in rows], dtype=h5py.string_dtype()))
                for key in ("steps", "t_hpcgan", "t_peer", "ratio", "same_params"):
                    g.create_dataset(key, data=np.array([r[key] for r in rows]))
                write_targets(f, targets)
    return 0
