"""``hpcgan bench collectives``: Allreduce and Allgather times vs message size, for the cost model.

A minimal OSU-style measurement (used because ``hpcgan bench comm`` is not available on this
branch): for each size s (bytes per rank) and each collective, ``--warmup`` untimed calls, a
barrier, then ``--reps`` timed calls; the time of one call is the slowest rank's mean. Written by
rank 0 to an HDF5 file::

    / attrs  world_size, machine, mpi_library, reps
    /<op>/bytes    (n_sizes,) int64   payload per rank [B]   op = allreduce | allgather
    /<op>/seconds  (n_sizes,) float64 time of one call [s]

:func:`hpcgan.costmodel.fit_network` fits latency alpha and bandwidth B to these files.
"""
from __future__ import annotations

import argparse
import time

import h5py
import numpy as np
from mpi4py import MPI

from ..info import machine, versions
from . import BENCHMARKS

DEFAULT_SIZES = [2**k for k in range(2, 21, 2)]  # 4 B .. 1 MiB


def time_collective(comm: MPI.Comm, op: str, nbytes: int, reps: int, warmup: int) -> float:
    """Seconds per call of ``op`` with ``nbytes`` per rank (slowest rank's mean over ``reps``)."""
    n = max(1, nbytes // 4)
    send = np.ones(n, dtype=np.float32)
    recv = np.empty(n * comm.size if op == "allgather" else n, dtype=np.float32)
    call = (lambda: comm.Allreduce(send, recv, op=MPI.SUM)) if op == "allreduce" else \
        (lambda: comm.Allgather(send, recv))
    for _ in range(warmup):
        call()
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(reps):
        call()
    return comm.allreduce((time.perf_counter() - t0) / reps, op=MPI.MAX)


@BENCHMARKS.register("collectives")
def bench_collectives(argv: list[str]) -> int:
    import torch

    p = argparse.ArgumentParser(prog="hpcgan bench collectives")
    p.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES, help="bytes per rank")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", required=True, help="HDF5 file to write (rank 0)")
    args = p.parse_args(argv)
    comm = MPI.COMM_WORLD
    table = {op: [time_collective(comm, op, s, args.reps, args.warmup) for s in args.sizes]
             for op in ("allreduce", "allgather")}
    if comm.rank == 0:
        with h5py.File(args.out, "w") as f:
            f.attrs.update(world_size=comm.size, machine=machine(torch.device("cpu")),
                           mpi_library=versions()["mpi_library"], reps=args.reps)
            for op, seconds in table.items():
                f.create_dataset(f"{op}/bytes", data=np.asarray(args.sizes, dtype=np.int64))
                f.create_dataset(f"{op}/seconds", data=np.asarray(seconds))
        print(f"collectives on {comm.size} rank(s) -> {args.out}")
        print(f"{'bytes':>10} {'allreduce us':>14} {'allgather us':>14}")
        for i, s in enumerate(args.sizes):
            print(f"{s:>10} {1e6 * table['allreduce'][i]:>14.1f} {1e6 * table['allgather'][i]:>14.1f}")
    return 0
