"""``hpcgan bench sharing``: how much longer a bulk-synchronous step takes than its CPU work when
the ranks of a node share its cores (oversubscription), for the cost model.

Every rank repeats a BSP step: a fixed amount of single-threaded work (a float32 matmul loop
sized, from this rank's own CPU clock, to ``w`` seconds of CPU time), then an 8-byte allreduce.
Per work size w:

    s(M, w) = (slowest rank's median step wall time) / (slowest rank's median CPU time of the work)

s = 1 when every rank has a core of its own; with more ranks than cores it includes the time a
rank waits for a core and the CPU that ranks spinning in MPI take from ranks still working.
:mod:`hpcgan.analysis.costmodel` predicts an oversubscribed run's non-communication time as s times its
measured CPU time per step (``/steps/cpu``).

HDF5 (``--out``, rank 0): attrs world_size, ranks_per_node, cores_per_node, oversubscribed,
machine, created_at; /sharing/{work, bytes, cpu, wall, factor} one row per (message size, work)
[s, B, s, s, 1].
"""
from __future__ import annotations

import os
import time

import h5py
import numpy as np
import torch
from mpi4py import MPI

from ..errors import UsageError, UsageParser
from ..info import machine
from ..results.recorder import utc_now
from .base import BENCHMARKS

KERNEL_SIZE = 96  # matmul of 96 x 96 float32: ~0.1 ms, fine-grained enough to size any w


def calibrated_work(target: float) -> tuple[callable, int]:
    """A function doing about ``target`` seconds of CPU work, and its matmul count."""
    a, b = torch.randn(KERNEL_SIZE, KERNEL_SIZE), torch.randn(KERNEL_SIZE, KERNEL_SIZE)
    out = torch.empty(KERNEL_SIZE, KERNEL_SIZE)

    def kernel(n: int) -> None:
        for _ in range(n):
            torch.mm(a, b, out=out)

    kernel(20)
    c0 = time.process_time()
    kernel(200)
    per = (time.process_time() - c0) / 200
    n = max(1, round(target / per))
    return (lambda: kernel(n)), n


def measure(work: float, nbytes: int, iters: int, comm: MPI.Comm) -> dict[str, float]:
    fn, _ = calibrated_work(work)
    token = np.zeros(max(1, nbytes // 8))
    wall, cpu = np.empty(iters), np.empty(iters)
    for _ in range(3):
        fn()
        comm.Allreduce(MPI.IN_PLACE, token)
    comm.Barrier()
    for i in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu[i] = time.process_time() - c0
        comm.Allreduce(MPI.IN_PLACE, token)
        wall[i] = time.perf_counter() - t0
    w = max(comm.allgather(float(np.median(wall))))
    c = max(comm.allgather(float(np.median(cpu))))
    return {"work": work, "bytes": float(token.nbytes), "cpu": c, "wall": w, "factor": w / c}


@BENCHMARKS.register("sharing")
def bench_sharing(argv: list[str]) -> int:
    p = UsageParser(prog="hpcgan bench sharing", description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="0.001,0.003,0.01,0.03", help="CPU seconds of work per step (comma list)")
    p.add_argument("--bytes", default="8", help="allreduce message sizes (comma list; the cost model "
                   "uses the smallest, its T_comm models the messages)")
    p.add_argument("--iters", type=int, default=200, help="timed steps per work size")
    p.add_argument("--out", default="", help="HDF5 file for the results (rank 0 writes)")
    args = p.parse_args(argv)
    try:
        works = sorted(float(w) for w in args.work.split(","))
    except ValueError:
        raise UsageError(f"--work takes seconds, e.g. 0.001,0.01; got '{args.work}'") from None
    comm = MPI.COMM_WORLD
    torch.set_num_threads(1)
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    ranks_per_node = max(comm.allgather(node.size))
    node.Free()
    cores = min(comm.allgather(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()))
    rows = [measure(w, int(b), args.iters, comm) for b in args.bytes.split(",") for w in works]
    if comm.rank == 0:
        over = ranks_per_node > cores
        print(f"hpcgan bench sharing: {comm.size} rank(s), {ranks_per_node} per node on {cores} usable core(s)"
              f"{' (oversubscribed)' if over else ''}; one thread per rank, BSP step = work + 8 B allreduce")
        print(f"{'work[ms]':>9} {'bytes':>9} {'cpu[ms]':>9} {'wall[ms]':>9} {'wall/cpu':>9}")
        for r in rows:
            print(f"{1e3 * r['work']:9.2f} {r['bytes']:9.0f} {1e3 * r['cpu']:9.3f} {1e3 * r['wall']:9.3f} "
                  f"{r['factor']:9.3f}")
        if args.out:
            with h5py.File(args.out, "w") as f:
                f.attrs.update(world_size=comm.size, ranks_per_node=ranks_per_node, cores_per_node=cores,
                               oversubscribed=over, machine=machine(torch.device("cpu")), created_at=utc_now())
                g = f.create_group("sharing")
                for key in rows[0]:
                    g.create_dataset(key, data=np.array([r[key] for r in rows]))
    return 0
