"""``hpcgan bench recorder``: what recording costs per training step.

Runs the real :class:`~hpcgan.results.recorder.Recorder` on every rank for N synthetic steps and reports,
per step: the row append, and the flush (gather to rank 0 + HDF5 append + fsync-less flush)
amortized over its interval, next to the time of an empty loop iteration for scale.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from ..errors import UsageParser
from ..log import Progress
from ..results.schema import StepStats
from ..results.recorder import Recorder
from .base import BENCHMARKS


#: Steps between checks whether a progress line is due.
PROGRESS_CHECK = 1000


@BENCHMARKS.register("recorder")
def bench_recorder(argv: list[str]) -> int:
    p = UsageParser(prog="hpcgan bench recorder")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--flush-every", type=int, nargs="+", default=[10, 50, 200])
    args = p.parse_args(argv)
    comm = MPI.COMM_WORLD
    tmpdir = comm.bcast(tempfile.mkdtemp(prefix="hpcgan-bench-") if comm.rank == 0 else None)
    results = []
    progress = Progress("bench recorder", (len(args.flush_every) + 1) * args.steps, "steps")
    for i, every in enumerate(args.flush_every):
        path = Path(tmpdir) / f"rec_{every}.h5"
        attrs = {"world_size": comm.size}
        rec = Recorder(path, comm, attrs, flush_every=every, mode="force")
        comm.Barrier()
        t0 = time.perf_counter()
        for step in range(args.steps):
            rec.record(StepStats(step=step, wall=1e-3, elapsed=step * 1e-3, bytes_sent=4096,
                                 d_loss=0.5, g_loss=0.7))
            if step % PROGRESS_CHECK == 0:  # a clock read per thousand steps: nothing against a record
                progress.update(i * args.steps + step)
        total = time.perf_counter() - t0
        rec.close(finished=True)
        results.append((every, comm.allreduce(total, op=MPI.MAX) / args.steps))
    t0 = time.perf_counter()
    for step in range(args.steps):
        StepStats(step=step)
    empty = (time.perf_counter() - t0) / args.steps
    progress.update(progress.total)
    progress.close()
    if comm.rank == 0:
        print(f"recorder cost per step, {comm.size} rank(s), {args.steps} steps (slowest rank):")
        print(f"{'flush_every':>12} {'us/step':>10}")
        for every, per in results:
            print(f"{every:>12} {1e6 * per:>10.2f}")
        print(f"{'(StepStats only)':>12} {1e6 * empty:>10.2f}")
        for f in Path(tmpdir).glob("*.h5"):
            f.unlink()
        Path(tmpdir).rmdir()
    return 0 if np.isfinite([r for _, r in results]).all() else 1
