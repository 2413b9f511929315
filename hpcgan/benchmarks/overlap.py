"""``hpcgan bench overlap``: how much communication the bucketed ``sync`` step hides behind backward,
on a network emulated with ``--net-emulate delay`` so that communication costs about what compute
does (one machine has no slow network of its own).

For the case DATA:MODEL (default ``digits:dcgan32``), on the job's ranks:

1. calibrate: a few unbucketed steps without emulation give the step's compute (wall minus
   communication) and d, the values exchanged per step; the emulated bandwidth B is then chosen so
   that one allreduce of 4d bytes is modelled to take ``--comm-ratio`` x compute:
   2(M-1)(alpha + 4d/(MB)) = ratio x compute (alpha = ``--latency``);
2. measure, in one loop: ``sync --bucket-mb 0`` (one exchange after backward: nothing can hide) and
   ``sync --bucket-mb X`` for each X of ``--bucket-mb``, each under ``delay`` on its own
   communicator, one step of each per iteration in rotating order, the same batches; per step the
   slowest rank's wall time and the step's recorded phases.

From the unbucketed run, compute C = median(wall - t_comm) and communication T = median(t_comm)
are measured separately; a bucketed run's step S hides (C + T - S) / T of the communication
(target >= 0.6 where comm ~ compute). The table also gives each run's recorded exposed
(``t_comm``) and hidden (``t_comm_hidden``) communication, which must tell the same story, and
when its first bucket started (R, from the start of the step), and two bounds from the step's own
timeline (:meth:`~hpcgan.exchange.buckets.BucketedExchange.arm` records when each gradient and
each bucket was ready, and when backward ended, at Cb): on a channel that carries one message at a
time, each taking its share of T by bytes (:func:`serial_finish`), the step cannot end before

* ``plan``: the buckets of this plan leave as they are ready, in plan order, the last one after
  backward (where :class:`~hpcgan.exchange.buckets.BucketedExchange` sends it);
* ``any plan``: every tensor leaves alone the moment its gradient exists -- no bucketing of this
  backward pass can do better, since a bucket only ever waits for more gradients;

and hides at most (Cb + T - S) / T. Where even ``any plan`` stays below the goal, the goal is out of
reach for this step at this comm/compute ratio, whatever the buckets: its gradients are not ready
early enough (a GAN step makes its first gradient after G's forward and D's pass over real and
fake examples together, :func:`~hpcgan.gan.losses.critic_outputs`, and G's largest tensors last).

HDF5 (``--out``, rank 0): attrs world_size, machine, created_at, latency, bandwidth, case,
backward_order;
``/overlap/{bucket_mb, buckets, t_step, t_compute, t_comm, t_comm_hidden, t_first_bucket,
t_backward, hidden_fraction, hideable_fraction, plan_bound, any_plan_bound}`` and
``/targets`` (:mod:`.targets`).
"""
from __future__ import annotations

import time

import h5py
import numpy as np
import torch

from ..algorithms import ALGORITHMS, TrainContext
from ..algorithms.base import resolve_config
from ..comm import build_communicator
from ..data import build_dataset
from ..errors import UsageError, UsageParser
from ..gan.losses import BACKWARD_ORDERS
from ..info import machine
from ..log import get_logger
from ..results.recorder import utc_now
from ..world import init_world, seed_everything
from .base import BENCHMARKS
from .targets import Target, write_targets

GOAL = 0.6


def build(case: str, world, bucket_mb: float, latency: float = 0.0, bandwidth: float = 0.0, batch: int = 64,
          order: str = "dg"):
    data, model = case.split(":", 1)
    given = {"algo": "sync", "data": data, "model": model, "batch_size": batch, "bucket_mb": bucket_mb,
             "backward_order": order}
    if latency or bandwidth:
        given.update(net_latency=latency, net_bandwidth=bandwidth, net_emulate="delay")
    cfg = resolve_config(given)
    seed_everything(cfg.run.seed, world.rank)
    comm = build_communicator(cfg.comm, world.comm)
    algo = ALGORITHMS.get("sync")(TrainContext(cfg, world, comm, build_dataset(cfg.data.data)))
    return algo, algo.make_loader()


def serial_finish(ready, durations) -> float:
    """When a channel that carries one message at a time, in the given order, is done: message k
    leaves at the later of its ready time and the previous message's end, and takes
    ``durations[k]``."""
    end = 0.0
    for r, d in zip(ready, durations):
        end = max(end, r) + d
    return end


def overlap_bounds(grad_at, ready_at, backward_end: float, param_bytes, bucket_bytes, comm: float) -> tuple[float, float]:
    """(plan, any plan): the most of ``comm`` seconds of communication that can hide behind a
    backward pass ending at ``backward_end`` (module doc), as fractions of ``comm``. Each message
    takes its bytes' share of ``comm``; ``grad_at`` / ``ready_at``: when each tensor's gradient /
    each bucket (plan order, the last one sent after backward) was ready."""
    total = float(sum(param_bytes))
    ready = list(ready_at[:-1]) + [max(ready_at[-1], backward_end)]
    plan = serial_finish(ready, [comm * b / total for b in bucket_bytes])
    order = np.argsort(grad_at, kind="stable")
    anyplan = max(backward_end, serial_finish([grad_at[i] for i in order], [comm * param_bytes[i] / total for i in order]))
    return tuple(min(1.0, (backward_end + comm - s) / comm) for s in (plan, anyplan))


def slowest(values: list[float], comm) -> np.ndarray:
    """Each value's largest over the ranks (the control channel ``comm``)."""
    return comm.allreduce_(np.array(values, dtype=np.float64), op="max")


@BENCHMARKS.register("overlap")
def bench_overlap(argv: list[str]) -> int:
    p = UsageParser(prog="hpcgan bench overlap", description=__doc__.split("\n\n")[0])
    p.add_argument("--case", default="digits:dcgan32", help="DATA:MODEL")
    p.add_argument("--bucket-mb", default="25,4", help="comma list of bucket sizes to compare with 0 [MiB]")
    p.add_argument("--comm-ratio", type=float, default=1.0, help="modelled communication / compute")
    p.add_argument("--latency", type=float, default=50e-6, help="emulated alpha per message [s]")
    p.add_argument("--steps", type=int, default=20, help="timed iterations (each runs one step of every run)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--backward-order", default="dg", choices=tuple(BACKWARD_ORDERS),
                   help="which network's gradients come first (train's --backward-order)")
    p.add_argument("--out", default="", help="HDF5 file for the results (rank 0 writes)")
    args = p.parse_args(argv)
    try:
        sizes = [float(x) for x in args.bucket_mb.split(",") if x]
    except ValueError:
        raise UsageError(f"--bucket-mb takes a comma list of sizes in MiB; got '{args.bucket_mb}'") from None
    if args.case.count(":") != 1 or not sizes or min(sizes) <= 0 or args.steps < 1 or args.warmup < 0 \
            or args.comm_ratio <= 0 or args.latency < 0:
        raise UsageError("--case DATA:MODEL, --bucket-mb sizes > 0, --steps >= 1, --warmup >= 0, "
                         "--comm-ratio > 0 and --latency >= 0")
    world = init_world()
    if world.size < 2:
        raise UsageError("bench overlap needs at least 2 ranks (a 1-rank job communicates nothing)")
    log = get_logger()
    torch.set_num_threads(world.threads)

    # 1. calibrate: compute per step and the values exchanged, without emulation
    algo, loader = build(args.case, world, 0.0, batch=args.batch_size, order=args.backward_order)
    work = []
    for t in range(args.warmup + 5):
        s = algo.step(next(loader), t)
        work.append(s.t_compute + s.t_compress + s.t_update)
    compute = float(np.median(slowest(work[args.warmup:], world.comm)))
    d, m = len(algo.flat), world.size
    per_message = compute * args.comm_ratio / (2 * (m - 1)) - args.latency
    if per_message <= 0:
        raise UsageError(f"--latency {args.latency:g} s alone exceeds the communication budget of a "
                         f"{1e3 * compute:.1f} ms compute step")
    bandwidth = 4 * d / (m * per_message)
    log.info("bench overlap: compute %.1f ms/step, d = %d values; emulating alpha = %.0f us, B = %.3g MB/s",
             1e3 * compute, d, 1e6 * args.latency, bandwidth / 1e6)

    # 2. measure every run in one loop
    runs = {b: build(args.case, world, b, args.latency, bandwidth, args.batch_size, args.backward_order)
            for b in [0.0] + sizes}
    rows = {b: [] for b in runs}
    timelines = {b: [] for b in runs}
    order = list(runs)
    for t in range(args.warmup + args.steps):
        for b in order[t % len(order):] + order[:t % len(order)]:
            algo, loader = runs[b]
            batch = next(loader)
            t0 = time.perf_counter()
            s = algo.step(batch, t)
            wall = time.perf_counter() - t0
            if t >= args.warmup:
                ex = algo.exchange
                rows[b].append([wall, s.t_compute + s.t_compress + s.t_update, s.t_comm, s.t_comm_hidden,
                                ex.first_start, ex.backward_end])
                timelines[b].append([*ex.grad_at, *ex.ready_at])
        if (t + 1) % 5 == 0:
            log.info("bench overlap: iteration %d of %d", t + 1, args.warmup + args.steps)
    med = {b: np.median(slowest(np.array(r).reshape(-1).tolist(), world.comm).reshape(-1, 6), axis=0)
           for b, r in rows.items()}
    base = med[0.0]
    C, T = base[0] - base[2], base[2]
    table = []
    for b, (wall, comp, comm, hidden, first, backward) in med.items():
        ex = runs[b][0].exchange
        bound = min(max(C - first, 0.0), T) / T if np.isfinite(first) else 0.0
        plan = anyplan = 0.0
        if ex.hooked:  # the slowest rank's median timeline
            line = np.median(slowest(np.array(timelines[b]).reshape(-1).tolist(), world.comm)
                             .reshape(len(timelines[b]), -1), axis=0)
            n = len(ex.grad_at)
            plan, anyplan = overlap_bounds(line[:n], line[n:], backward, [4 * p.numel() for p in ex.flat.param_list],
                                           [4 * (k.stop - k.start) for k in ex.buckets], T)
        table.append({"bucket_mb": b, "buckets": len(ex.buckets), "t_step": wall, "t_compute": comp,
                      "t_comm": comm, "t_comm_hidden": hidden, "t_first_bucket": first, "t_backward": backward,
                      "hidden_fraction": (C + T - wall) / T, "hideable_fraction": bound,
                      "plan_bound": plan, "any_plan_bound": anyplan})
    if world.rank == 0:
        targets = [Target(f"comm hidden by the bucketed sync step, --bucket-mb {r['bucket_mb']:g} "
                          f"({r['buckets']} buckets), {args.case}, {m} ranks, comm ~ {args.comm_ratio:g} x compute",
                          r["hidden_fraction"], lo=GOAL) for r in table if r["bucket_mb"] > 0]
        targets += [Target(f"at most hideable, the first bucket starting {1e3 * r['t_first_bucket']:.0f} ms into the "
                           f"step, --bucket-mb {r['bucket_mb']:g}", r["hideable_fraction"])
                    for r in table if r["bucket_mb"] > 0]
        targets += [Target(f"at most hideable by {what} on this step's gradient timeline, --bucket-mb {r['bucket_mb']:g}",
                           r[key]) for r in table if r["buckets"] > 1
                    for what, key in (("this plan", "plan_bound"), ("any bucket plan", "any_plan_bound"))]
        targets += [Target(f"comm hidden / at most hideable by any bucket plan, --bucket-mb {r['bucket_mb']:g}",
                           r["hidden_fraction"] / r["any_plan_bound"]) for r in table
                    if r["buckets"] > 1 and r["any_plan_bound"] > 0]
        print(f"hpcgan bench overlap: {m} rank(s), {world.threads} thread(s) per rank, {args.case}, batch "
              f"{args.batch_size}, --backward-order {args.backward_order}; --net-emulate delay with alpha = {1e6 * args.latency:.0f} us, B = "
              f"{bandwidth / 1e6:.3g} MB/s (modelled allreduce = {args.comm_ratio:g} x the calibrated compute "
              f"{1e3 * compute:.1f} ms); medians of {args.steps} iterations, slowest rank")
        print(f"unbucketed: compute C = {1e3 * C:.1f} ms, communication T = {1e3 * T:.1f} ms (measured separately)")
        print(f"{'bucket_mb':>9} {'buckets':>7} {'step[ms]':>9} {'work[ms]':>9} {'exposed[ms]':>11} "
              f"{'hidden[ms]':>10} {'first[ms]':>9} {'Cb[ms]':>8} {'(C+T-S)/T':>9} {'at most':>7} {'plan':>5} "
              f"{'any plan':>8}")
        for r in table:
            print(f"{r['bucket_mb']:9g} {r['buckets']:7d} {1e3 * r['t_step']:9.1f} {1e3 * r['t_compute']:9.1f} "
                  f"{1e3 * r['t_comm']:11.1f} {1e3 * r['t_comm_hidden']:10.1f} {1e3 * r['t_first_bucket']:9.1f} "
                  f"{1e3 * r['t_backward']:8.1f} {r['hidden_fraction']:9.2f} {r['hideable_fraction']:7.2f} "
                  f"{r['plan_bound']:5.2f} {r['any_plan_bound']:8.2f}")
        for target in targets:
            print(target.line())
        if args.out:
            with h5py.File(args.out, "w") as f:
                f.attrs.update(world_size=m, machine=machine(world.device), created_at=utc_now(),
                               latency=args.latency, bandwidth=bandwidth, case=args.case,
                               backward_order=args.backward_order)
                g = f.create_group("overlap")
                for key in table[0]:
                    g.create_dataset(key, data=np.array([r[key] for r in table]))
                write_targets(f, targets)
    return 0
