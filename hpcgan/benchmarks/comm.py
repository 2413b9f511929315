"""``hpcgan bench comm``: OSU-style dense allreduce vs every compressor's aggregate, every backend,
with the peers a user would pick instead.

For each available backend, op and message size (bytes of the dense fp32 tensor, d = size/4):
warm-up calls, a barrier, then timed iterations; each iteration's time is the slowest rank's, and
the median over iterations is reported. Ops: ``dense`` = in-place ``allreduce_`` (sum) of the
fp32 tensor; ``dense-fp16`` / ``dense-bf16`` (with compressor fp16 / bf16) = the same of d 16-bit
values; a compressor name = compress + :func:`~hpcgan.exchange.collect` (its collectives + decompress of every
rank's payload + mean), the whole cost a training step pays; a peer (:mod:`.peers`: torch's
``fp16_compress_hook`` and ``powerSGD_hook`` on backend torch, Horovod's ``Compression.fp16`` on
backend horovod) = the same job done by the peer's own code. Local costs (compress -- every round's
local work for PowerSGD --, decompress, ``x.clone()`` of the same tensor) are timed once per size
on one thread, since they do not depend on the backend; the three are timed round-robin in one loop
so that they see the same machine state.

Target lines (:mod:`.targets`), where this run measured them: per compressor, (compress +
decompress) / clone at 6.3M values (<= 1.5 for sign, fp16, bf16; <= 3 for topk, randk, qsgd,
powersgd) and its slower call at 4 KiB (<= 50 us), topk-torch being the reference without goals;
wire-byte ratios of sign and top-k; top-k's kept count (0.9k..1.1k) and delta (>= 0.9 x
topk-torch's) on real dcgan32 digits gradients (:func:`~.gradients.real_gradient`,
``--real-grads``); dense mpi vs horovod; on mpi, the allreduce of d fp16 / bf16 values
(``dense-fp16``, ``dense-bf16``: ``allreduce_`` of the 16-bit tensor, no casts) vs the dense fp32 one
(<= 1.2), and fp16 / bf16 with their casts vs the same (no goal); on horovod, hpcgan's fp16 and bf16 vs Horovod's own fp16 (<= 1.1); and per peer and size,
hpcgan's time / the peer's time (no goal). At 4 KiB, per backend and compressor, what its
exchange costs beyond its own local work, in dense 4 KiB allreduces (<= 3), timed apart from the
table (:func:`small_message_rows` says how and why).

HDF5 layout (``--out FILE.h5``, written by rank 0; attrs world_size, versions_json, machine,
created_at, threads, kernels_json)::

    /comm/<column>      one row per (backend, op, size): backend, op (str), size [B] (dense fp32
                        bytes), wire_bytes [B] (bytes this rank handed to the transport per call),
                        iters, t_median, t_min, t_max [s]
    /compress/<column>  one row per (op, size): op, size, wire_bytes, t_clone, t_compress,
                        t_decompress [s] (medians, one thread), kept, delta (top-k's K and achieved
                        delta of the last call; NaN for the other compressors)
    /small/<column>     at 4 KiB, one row per (backend, op): backend, op (dense or a compressor),
                        t_collective (dense: the allreduce; a compressor: its compress and, from a
                        barrier, its whole exchange), t_own (its local work alone) [s], medians
                        (:func:`small_message_rows`)
    /targets/<column>   one row per target line: name, value, unit, lo, hi, met

Fit alpha and B from /comm rows with op == "dense": t = 2(M-1)(alpha + size/(M B)) (ring).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import replace

import h5py
import numpy as np
import torch
from mpi4py import MPI

from ..comm import BACKENDS, build_communicator
from ..compress import COMPRESSORS, Payload, build_compressor, cast, powersgd, qsgd, sign, sparse
from ..compress.base import declared_options, local_rounds
from ..config import CommConfig, add_flag
from ..errors import UsageError, UsageParser
from ..exchange import collect
from ..exchange.wire import from_bytes, to_bytes
from ..info import machine, versions
from ..results.recorder import utc_now
from .base import BENCHMARKS
from .peers import peers_for
from .targets import Target, write_targets

SIGN_TARGET_ELEMENTS = 6_300_000  # the size of the speed targets: compress + decompress vs clone
LOCAL_ITERS = 30  # timed compress / decompress / clone rounds per size at least (medians: the targets)
SPEED_GOALS = {"sign": 1.5, "fp16": 1.5, "bf16": 1.5, "topk": 3.0, "randk": 3.0, "qsgd": 3.0, "powersgd": 3.0}
SMALL_BYTES, SMALL_GOAL = 4096, 50e-6  # each call at 4 KiB: <= 50 us
SMALL_OVERHEAD_GOAL = 3.0              # a compressor's collective at 4 KiB: <= its local work + 3 dense allreduces
REFERENCES = {"topk-torch"}            # measured for comparison, no goal of their own
HALF_SUMS = {"dense-fp16": torch.float16, "dense-bf16": torch.bfloat16}  # allreduce_ of d 16-bit values
HALF_VS_DENSE = 1.2    # mpi: the 16-bit allreduce of d values <= 1.2x the dense fp32 one, at the target size
HALF_VS_HOROVOD = 1.1  # horovod: hpcgan's fp16 / bf16 (cast, sum, cast back) <= 1.1x Horovod's own fp16
UNITS = {"": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30, "b": 1}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in UNITS:
        raise UsageError(f"bad size '{text}' (use e.g. 4096, 64KiB, 16MiB)")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def default_sizes(lo: int, hi: int) -> list[int]:
    """Powers of 4 from ``lo`` to ``hi``, plus the 6.3M-element size of the speed targets."""
    sizes, s = [], lo
    while s <= hi:
        sizes.append(s)
        s *= 4
    if lo <= 4 * SIGN_TARGET_ELEMENTS <= hi:
        sizes.append(4 * SIGN_TARGET_ELEMENTS)
    return sorted(sizes)


def timed(fn, iters: int, warmup: int, comm: MPI.Comm) -> np.ndarray:
    """Per-iteration seconds of a collective ``fn``, the slowest rank's each time."""
    for _ in range(warmup):
        fn()
    comm.Barrier()
    out = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    comm.Allreduce(MPI.IN_PLACE, out, op=MPI.MAX)
    return out


def timed_together(fns, iters: int, warmup: int) -> list[float]:
    """Median seconds of each function, timed in turn within every iteration (one process)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    t = np.empty((iters, len(fns)))
    for i in range(iters):
        for j, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            t[i, j] = time.perf_counter() - t0
    return [float(v) for v in np.median(t, axis=0)]


def iterations(size: int, iters: int) -> int:
    """OSU-style: full count up to 1 MiB, a tenth above (at least 3)."""
    return iters if size <= 2**20 else max(3, iters // 10)


@BENCHMARKS.register("comm")
def bench_comm(argv: list[str]) -> int:
    p = UsageParser(prog="hpcgan bench comm", description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS.names()), help="comma list (default: all)")
    p.add_argument("--compressors", default=",".join(n for n in COMPRESSORS.names() if n != "identity"))
    p.add_argument("--min-size", type=parse_size, default=2**10, help="smallest message (default 1KiB)")
    p.add_argument("--max-size", type=parse_size, default=2**26, help="largest message (default 64MiB)")
    p.add_argument("--sizes", type=lambda s: [parse_size(x) for x in s.split(",")], default=None,
                   help="explicit comma list of sizes (overrides --min-size/--max-size)")
    p.add_argument("--iters", type=int, default=50, help="timed iterations up to 1 MiB (a tenth above)")
    p.add_argument("--warmup", type=int, default=2)
    options = declared_options()
    for name, (kind, f, users) in sorted(options.items()):  # each compressor's own options
        add_flag(p, name, kind, f, f"{f.metadata['help']} ({', '.join(users)})", None)
    p.add_argument("--real-grads", default="dcgan32:digits",
                   help="MODEL:DATA whose gradients measure top-k's kept count and delta; 'none' skips it")
    p.add_argument("--out", default="", help="HDF5 file for the results (rank 0 writes)")
    args = p.parse_args(argv)
    world = MPI.COMM_WORLD
    torch.set_num_threads(1)
    sizes = args.sizes or default_sizes(args.min_size, args.max_size)
    ops = [n for n in args.compressors.split(",") if n]
    for n in ops:
        COMPRESSORS.get(n)  # unknown names fail before any collective
    if args.real_grads != "none" and not re.fullmatch(r"[\w-]+:[\w:./-]+", args.real_grads):
        raise UsageError(f"--real-grads takes MODEL:DATA (e.g. dcgan32:digits) or none; got '{args.real_grads}'")
    cfg = CommConfig(compressor_options={k: v for k, v in vars(args).items() if k in options})  # checked
    comms, skipped = {}, {}
    for name in args.backends.split(","):
        BACKENDS.get(name)
        try:
            comms[name] = build_communicator(CommConfig(backend=name), world)
        except UsageError as e:
            skipped[name] = str(e)
    local = local_costs(sizes, ops, cfg, args)
    rows, small = [], []
    for backend, comm in comms.items():
        if SMALL_BYTES in sizes:
            small += small_message_rows(backend, comm, ops, cfg, max(args.iters, 1), args.warmup, world)
        for size in sizes:
            x = torch.randn(size // 4, generator=torch.Generator().manual_seed(world.rank))
            n = iterations(size, args.iters)
            zeros = torch.zeros_like(x)  # summed in place, stays zero: no copy inside the timing
            rows.append(collective_row(backend, "dense", size, comm,
                                       lambda: comm.allreduce_(zeros, average=False), n, args))
            for op, dtype in HALF_SUMS.items():
                if op.removeprefix("dense-") in ops:  # the 16-bit sum alone, without the casts
                    half = torch.zeros(size // 4, dtype=dtype)
                    rows.append(collective_row(backend, op, size, comm,
                                               lambda h=half: comm.allreduce_(h, average=False), n, args))
            for op in ops:
                c = build_compressor(replace(cfg, compressor=op))
                fn = lambda: collect(comm, c, *c.compress(x, [x.numel()]))  # noqa: E731
                rows.append(collective_row(backend, op, size, comm, fn, n, args))
            for peer in peers_for(backend):
                if peer.versus in ops:
                    row = collective_row(backend, peer.name, size, comm, peer.build(x, comm), n, args)
                    rows.append({**row, "wire_bytes": peer.wire(x.numel())})  # outside hpcgan's accounting
    if world.rank == 0:
        real = real_gradient_figures(args, cfg) if args.real_grads != "none" and "topk" in ops else []
        targets = speed_targets(local) + wire_targets(local) + real + transport_targets(rows) + small_message_targets(small)
        print_report(rows, local, skipped, world.size, targets)
        if args.out:
            write_h5(args.out, rows, local, small, targets, world.size)
    return 0


def kernels() -> dict[str, str]:
    """Which code compresses CPU tensors here, per compressor with C kernels."""
    return {"fp16/bf16": cast.implementation(), "sign": sign.implementation(), "topk": sparse.implementation(),
            "qsgd": qsgd.implementation(), "powersgd": powersgd.implementation()}


def collective_row(backend, op, size, comm, fn, iters, args) -> dict:
    before = comm.bytes_sent
    fn()
    wire = comm.bytes_sent - before
    t = timed(fn, iters, args.warmup, MPI.COMM_WORLD)
    return {"backend": backend, "op": op, "size": size, "wire_bytes": wire, "iters": iters,
            "t_median": float(np.median(t)), "t_min": float(t.min()), "t_max": float(t.max())}


def local_costs(sizes, ops, cfg, args) -> list[dict]:
    """clone / compress / decompress medians of one tensor per size, on one thread, no comm.
    A multi-round compressor's compress includes its later rounds' local work (each "sum over
    ranks" being its own payload), as :func:`~hpcgan.compress.base.local_rounds` runs them."""
    out = []
    for size in sizes:
        x = torch.randn(size // 4)
        n = max(iterations(size, args.iters), LOCAL_ITERS)
        for op in ops:
            c = build_compressor(replace(cfg, compressor=op))
            payload, ctx = c.compress(x, [x.numel()])
            rounds = local_rounds(c, payload, ctx)
            t_clone, tc, td = timed_together([x.clone, lambda: local_rounds(c, *c.compress(x, [x.numel()])),
                                              lambda: c.decompress(rounds[-1], ctx)], n, args.warmup)
            stats = c.stats()
            out.append({"op": op, "size": size, "wire_bytes": sum(c.nbytes(r) for r in rounds), "t_clone": t_clone,
                        "t_compress": tc, "t_decompress": td, "kept": stats.get("kept", math.nan),
                        "delta": stats.get("delta", math.nan)})
    return out


def speed_targets(local) -> list[Target]:
    """(compress + decompress) / clone at 6.3M values and the slower call at 4 KiB, per compressor."""
    out = []
    for r in local:
        if r["size"] == 4 * SIGN_TARGET_ELEMENTS:
            ratio = (r["t_compress"] + r["t_decompress"]) / r["t_clone"]
            out.append(Target(f"{r['op']} (compress + decompress) / clone at {SIGN_TARGET_ELEMENTS} values", ratio,
                              hi=SPEED_GOALS.get(r["op"], math.nan)))
        if r["size"] == SMALL_BYTES:
            out.append(Target(f"{r['op']} slower call (compress or decompress) at 4KiB",
                              1e6 * max(r["t_compress"], r["t_decompress"]), " us",
                              hi=math.nan if r["op"] in REFERENCES else 1e6 * SMALL_GOAL))
    return out


def wire_targets(local) -> list[Target]:
    out = []
    for op, goal in (("sign", 30), ("topk", 45)):
        r = max((r for r in local if r["op"] == op), key=lambda r: r["size"], default=None)
        if r:
            out.append(Target(f"wire bytes dense/{op} at {fmt_size(r['size'])}", r["size"] / r["wire_bytes"], "x",
                              lo=goal))
    return out


def real_gradient_figures(args, cfg: CommConfig) -> list[Target]:
    """top-k's kept count and delta against torch.topk's on one real gradient (rank 0, no comm)."""
    from .gradients import real_gradient
    model, data = args.real_grads.split(":", 1)
    x, tensor_sizes = real_gradient(model, data)
    ratio = cfg.compressor_options["ratio"]
    fast, exact = (build_compressor(n, ratio=ratio) for n in ("topk", "topk-torch"))
    fast.compress(x, tensor_sizes)
    exact.compress(x, tensor_sizes)
    k = sum(sparse.keep_counts(ratio, tensor_sizes))
    where = f"on {model}/{data} gradients ({x.numel()} values, {len(tensor_sizes)} tensors)"
    return [Target(f"topk kept / k {where}", fast.stats()["kept"] / k, lo=0.9, hi=1.1),
            Target(f"topk delta / topk-torch delta {where}", fast.stats()["delta"] / exact.stats()["delta"], lo=0.9)]


def transport_targets(rows) -> list[Target]:
    """At the target size: dense mpi vs horovod; on mpi, each 16-bit sum (cast, allreduce of the
    16-bit values, cast back) vs the dense fp32 allreduce; on horovod, each 16-bit sum vs Horovod's
    own fp16 (``hvd-fp16``). Each peer vs the hpcgan op it stands in for, at every size (no goal)."""
    out = []
    size = 4 * SIGN_TARGET_ELEMENTS
    at = {(r["backend"], r["op"], r["size"]): r["t_median"] for r in rows}
    if ("mpi", "dense", size) in at and ("horovod", "dense", size) in at:
        out.append(Target(f"dense allreduce of {fmt_size(size)} mpi / horovod time",
                          at[("mpi", "dense", size)] / at[("horovod", "dense", size)], hi=1.0))
    for backend, versus, goal, half in (("mpi", "dense", HALF_VS_DENSE, HALF_SUMS),
                                        ("mpi", "dense", math.nan, ("fp16", "bf16")),  # with the casts: no goal
                                        ("horovod", "hvd-fp16", HALF_VS_HOROVOD, ("fp16", "bf16"))):
        for op in half:
            if (backend, op, size) in at and (backend, versus, size) in at:
                out.append(Target(f"{backend}: {op} / {versus} allreduce time at {fmt_size(size)}",
                                  at[(backend, op, size)] / at[(backend, versus, size)], hi=goal))
    for backend, op, size in at:
        for peer in peers_for(backend):
            if peer.name == op and (backend, peer.versus, size) in at:
                out.append(Target(f"peer {backend}: hpcgan {peer.versus} / {peer.name} time at {fmt_size(size)}",
                                  at[(backend, peer.versus, size)] / at[(backend, op, size)]))
    return out


def own_decode(compressor, payload: Payload, ctx, size: int):
    """The decompression a collective's result needs, on this rank alone, as a function to time:
    one ``decompress`` of the summed payload for a summable compressor; for the others, the M
    payloads the allgather delivers (here M copies of this rank's) through ``decompress_sum``,
    the M kernel calls that adding M ranks' payloads takes whoever runs them."""
    if compressor.summable:
        return lambda: compressor.decompress(payload, ctx)
    shapes = tuple((t.shape, t.dtype) for t in payload)
    stacked = from_bytes(to_bytes(payload, shapes).repeat(size, 1), shapes)
    return lambda: compressor.decompress_sum(stacked, ctx)


def small_message_rows(backend: str, comm, ops, cfg, iters: int, warmup: int, world: MPI.Comm) -> list[dict]:
    """At 4 KiB on ``comm``: the dense allreduce and, per compressor, its collective next to its
    own local work, all timed in turn within every iteration (the same machine state for all).

    * ``dense``: a barrier, then the timed ``allreduce_`` (as in the table);
    * ``op``: the timed compress, a barrier, the timed :func:`~hpcgan.exchange.collect` (the step's
      whole compressed exchange); ``own``: the timed local work of the same compressor on this rank
      alone -- compress with every later round's local work (:func:`local_rounds`) and the
      decompression the result needs (:func:`own_decode`).

    The barrier before each collective lines the ranks up as a dense allreduce's ranks are lined
    up by the previous one: without it, the collective would also be charged how long the other
    rank's compress happened to run longer (jitter of a few tens of microseconds on a shared
    2-core machine), which the dense reference, with no local work before it, never pays. It is
    the backend's own barrier (``comm.barrier``), so that it leaves the backend's transport as
    awake as its previous collective would: gloo's first allreduce after an MPI barrier took
    0.4-2.5 ms on such a machine, against about 0.5 ms after one of its own.
    Per iteration the slowest rank's time counts; returns medians [s] per op."""
    x = torch.randn(SMALL_BYTES // 4, generator=torch.Generator().manual_seed(world.rank))
    zeros = torch.zeros_like(x)
    steps = []
    for op in ops:
        c, local = build_compressor(replace(cfg, compressor=op)), build_compressor(replace(cfg, compressor=op))
        payload, ctx = local.compress(x, [x.numel()])
        decode = own_decode(local, local_rounds(local, payload, ctx)[-1], ctx, comm.size)
        steps.append((op, c, local, decode))
    t = np.zeros((iters, 1 + 2 * len(steps)))
    clock = time.perf_counter
    for i in range(-warmup, iters):
        comm.barrier()
        t0 = clock()
        comm.allreduce_(zeros, average=False)
        row = [clock() - t0]
        for op, c, local, decode in steps:
            t0 = clock()
            payload, ctx = c.compress(x, [x.numel()])
            t1 = clock()
            comm.barrier()
            t2 = clock()
            collect(comm, c, payload, ctx)
            t3 = clock()
            local_rounds(local, *local.compress(x, [x.numel()]))
            t4 = clock()
            decode()
            row += [(t1 - t0) + (t3 - t2), clock() - t3]
        if i >= 0:
            t[i] = row
    world.Allreduce(MPI.IN_PLACE, t, op=MPI.MAX)
    med = np.median(t, axis=0)
    out = [{"backend": backend, "op": "dense", "t_collective": float(med[0]), "t_own": 0.0}]
    for j, (op, *_) in enumerate(steps):
        out.append({"backend": backend, "op": op, "t_collective": float(med[1 + 2 * j]), "t_own": float(med[2 + 2 * j])})
    return out


def small_message_targets(small) -> list[Target]:
    """At 4 KiB, per backend and compressor: what its exchange costs beyond the compressor's own
    local work (:func:`small_message_rows`), i.e. the exchange's and transport's overhead, in
    dense 4 KiB allreduces on that backend (goal <= 3)."""
    dense = {r["backend"]: r["t_collective"] for r in small if r["op"] == "dense"}
    return [Target(f"{r['backend']}: {r['op']} collective at 4KiB beyond its compress + decompress, in dense "
                   "4KiB allreduces", (r["t_collective"] - r["t_own"]) / dense[r["backend"]], "x",
                   hi=math.nan if r["op"] in REFERENCES else SMALL_OVERHEAD_GOAL)
            for r in small if r["op"] != "dense"]


def fmt_size(n: int) -> str:
    for unit, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= f:
            return f"{n / f:.4g}{unit}"
    return f"{n}B"


def print_report(rows, local, skipped, world_size, targets) -> None:
    cost = {(r["op"], r["size"]): r for r in local}
    print(f"hpcgan bench comm: {world_size} rank(s), median of timed iterations, slowest rank; "
          "algbw = size / time; cost vs clone of the same tensor (one thread); kernels: "
          + ", ".join(f"{k} {v}" for k, v in kernels().items()))
    for name, why in skipped.items():
        print(f"backend {name} skipped: {why}")
    print(f"{'backend':>8} {'op':>19} {'size':>9} {'lat[us]':>10} {'algbw[GB/s]':>11} {'wire[B]':>11} "
          f"{'wire/dense':>10} {'comp/clone':>10} {'dec/clone':>9}")
    for r in rows:
        c = cost.get((r["op"], r["size"]))
        comp = f"{c['t_compress'] / c['t_clone']:10.2f}" if c else f"{'-':>10}"
        dec = f"{c['t_decompress'] / c['t_clone']:9.2f}" if c else f"{'-':>9}"
        print(f"{r['backend']:>8} {r['op']:>19} {fmt_size(r['size']):>9} {1e6 * r['t_median']:10.1f} "
              f"{r['size'] / r['t_median'] / 1e9:11.3f} {r['wire_bytes']:11d} "
              f"{r['wire_bytes'] / max(r['size'], 1):10.4f} {comp} {dec}")
    for r in local:
        if not math.isnan(r["kept"]):
            print(f"{r['op']} at {fmt_size(r['size'])}: kept {r['kept']:.0f} entries, achieved delta {r['delta']:.4g}")
    for t in targets:
        print(t.line())


def write_h5(path, rows, local, small, targets, world_size) -> None:
    with h5py.File(path, "w") as f:
        f.attrs.update(world_size=world_size, versions_json=json.dumps(versions()), threads=1,
                       kernels_json=json.dumps(kernels()), machine=machine(torch.device("cpu")), created_at=utc_now())
        for group, table in (("comm", rows), ("compress", local), ("small", small)):
            g = f.create_group(group)
            for key in (table[0] if table else {}):
                values = [r[key] for r in table]
                g.create_dataset(key, data=np.array(values, dtype=h5py.string_dtype()) if isinstance(values[0], str)
                                 else np.array(values))
                g[key].attrs["unit"] = "s" if key.startswith("t_") else ("B" if "size" in key or "bytes" in key else "")
        write_targets(f, targets)
