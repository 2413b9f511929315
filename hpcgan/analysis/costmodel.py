"""Communication cost model (docs/ALGORITHMS.md section 5): fit, predict, project.

Notation: alpha = latency per message [s], B = bandwidth [B/s], d = parameters of (G, D),
M = ranks, p = payload bytes per rank per step. Each algorithm states its communication time of
one step, T_comm(M), in these terms (``Algorithm.comm_formula`` and ``Algorithm.comm_time``, built
on the collectives of :class:`hpcgan.netmodel.NetworkModel`; T_comm = 0 at M = 1): this module
loops over the registry and names no algorithm. Predicted step time at M ranks: T(M) = C(M) + T_comm(M), where C(M) is
the run's non-communication time per step (compute, compression, update, data), the slowest
rank's median over timed steps:

* ranks with cores of their own:  C(M) = wall - t_comm - t_net_emulated, as measured, so the
  comparison with the measured step time tests the communication model alone;
* ranks sharing cores (more ranks on a node than cores, e.g. 4 ranks on this 2-core machine):
  the measured wall time then also holds waits for a core, which show up inside the collectives
  of the ranks that got one. C(M) = s(M, w) * w, with w the rank's CPU time per step outside
  collectives (/steps/cpu: its work, which does not advance while it waits) and s the node's
  time-sharing factor for steps of that much work, measured by ``hpcgan bench sharing`` at M
  ranks (:mod:`hpcgan.benchmarks.sharing`; about M / cores for bulk-synchronous steps).

Fit: alpha and 1/B by non-negative least squares on *relative* residuals (t_pred - t)/t over the
dense fp32 allreduce points of ``hpcgan bench comm`` files (/comm rows with op "dense", mpi
backend; n = size bytes, ring t = 2(M-1)(alpha + n/(M B)), as docs/ALGORITHMS.md section 5), so
4-byte and 1-MiB messages weigh alike and a scheduling spike (t >> t_pred) costs at most 1. The
comparison with the runs uses the fit at the same M when there is one (:func:`fit_per_ranks`),
else the pooled fit.

Overlap: a fraction f of the communication can run behind compute (bucketed allreduce during
backward, a gossip round during the next step's forward). The hidden part cannot exceed the compute
it hides behind, so

    T(M) = C(M) + T_comm(M) - min(f T_comm(M), C(M))        (f = 0: no overlap, T = C + T_comm)

(:func:`step_time`). Runs measure f: ``t_comm_hidden`` / (``t_comm`` + ``t_comm_hidden``) from
results schema v4 (:func:`hpcgan.analysis.runs.overlap_fraction`); older files hid nothing.

Projection to many ranks: C(M) = C(1) for weak scaling (per-rank work constant) and C(1)/M for
strong scaling (ideal compute scaling, an optimistic bound); the network is the one given (default
25 GB/s, 2 us), not the fitted one; no contention; overlap f as given (default 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
from scipy.optimize import nnls

from ..netmodel import NetworkModel, Workload

from ..results.reader import RunResult, slowest_median


def fit_per_ranks(files: list[Path]) -> dict[int, NetworkModel]:
    """One fit per rank count M (one file each): alpha and B as seen at that process count.

    On an oversubscribed node (more ranks than cores) the apparent latency grows with M, because a
    collective waits for descheduled peers; a fit per M captures that, a pooled fit cannot.
    """
    fits = {}
    for path in files:
        with h5py.File(path, "r") as f:
            m = int(f.attrs["world_size"])
        net = fit_network([path])
        if net is not None:
            fits[m] = net
    return fits


def fit_network(files: list[Path]) -> NetworkModel | None:
    """alpha, B pooled over ``hpcgan bench comm`` files' dense mpi allreduce rows (None if none)."""
    rows, times, names = [], [], []
    for path in files:
        with h5py.File(path, "r") as f:
            m = int(f.attrs["world_size"])
            points = _points(f) if m >= 2 else []
            if points:
                names.append(f"M={m}")
            for s, t in points:  # ring allreduce: t = 2(M-1) alpha + 2(M-1)/M * s/B
                rows.append([2 * (m - 1), 2 * (m - 1) / m * s])
                times.append(t)
    if not rows:
        return None
    a, t = np.asarray(rows, dtype=np.float64), np.asarray(times, dtype=np.float64)
    (alpha, inv_b), _ = nnls(a / t[:, None], np.ones_like(t))
    resid = np.median(np.abs(a @ [alpha, inv_b] / t - 1))
    source = f"fitted to hpcgan bench comm dense allreduce, {', '.join(names)}, {len(t)} points"
    return NetworkModel(float(alpha), float(1 / inv_b) if inv_b > 0 else 0.0, source, float(resid))


def _points(f: h5py.File) -> list[tuple[float, float]]:
    """(bytes, seconds) of the dense fp32 allreduce (op "dense", mpi backend) in a ``bench comm`` file."""
    if "comm" not in f:
        return []
    c = {k: f["comm"][k][()] for k in ("backend", "op", "size", "t_median")}
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
    return [(float(s), float(t)) for b, o, s, t in zip(c["backend"], c["op"], c["size"], c["t_median"])
            if text(o) == "dense" and text(b) == "mpi"]


# -- per-algorithm communication time -----------------------------------------------------------
def algorithm(name: str):
    """The registered algorithm class of a results file's ``algorithm`` attribute, or None."""
    from ..algorithms import ALGORITHMS

    return ALGORITHMS.get(name) if name in ALGORITHMS else None


def comm_time(algo: str, net: NetworkModel, m: int, work: Workload) -> float:
    """Modelled communication seconds per step (NaN for an algorithm this hpcgan does not know)."""
    cls = algorithm(algo)
    return cls.comm_time(net, m, work) if cls is not None else float("nan")


def comm_formula(algo: str) -> str:
    cls = algorithm(algo)
    return cls.comm_formula if cls is not None else "unknown algorithm"


# -- time-sharing of oversubscribed nodes -------------------------------------------------------
@dataclass(frozen=True)
class Sharing:
    """s(M, w) at one M from ``hpcgan bench sharing``: factors at CPU works w (sorted)."""

    ranks: int
    oversubscribed: bool
    cpu: tuple[float, ...]
    factor: tuple[float, ...]

    def at(self, work: float) -> float:
        """s at ``work`` seconds of CPU time: interpolated in log w, clamped to the measured range."""
        return float(np.interp(np.log(work), np.log(self.cpu), self.factor))


def read_sharing(files: list[Path]) -> dict[int, Sharing]:
    """One :class:`Sharing` per rank count, from ``hpcgan bench sharing`` files (smallest message)."""
    out = {}
    for path in files:
        with h5py.File(path, "r") as f:
            if "sharing" not in f:
                continue
            g = {k: f["sharing"][k][()] for k in ("bytes", "cpu", "factor")}
            keep = g["bytes"] == g["bytes"].min()
            order = np.argsort(g["cpu"][keep])
            m = int(f.attrs["world_size"])
            out[m] = Sharing(m, bool(f.attrs["oversubscribed"]), tuple(g["cpu"][keep][order]),
                             tuple(g["factor"][keep][order]))
    return out


# -- quantities taken from the runs -------------------------------------------------------------
def local_time(run: RunResult, sharing: Sharing | None = None) -> float:
    """C(M) [s]: measured non-communication wall time, or s(M, w) w on an oversubscribed node."""
    if sharing is not None and sharing.oversubscribed:
        work = slowest_median(run.timed("cpu"))
        return sharing.at(work) * work
    return slowest_median(run.timed("wall") - run.timed("t_comm") - run.timed("t_net_emulated"))


def payload_per_rank(run: RunResult) -> float:
    """p: mean bytes one rank hands to the transport per step."""
    return run.bytes_per_step() / run.world_size


def parameter_counts(run: RunResult) -> dict[str, int]:
    """Parameters of the run's G and D, rebuilt from its config (falls back to a dense payload / 4, split evenly)."""
    from ..config import ModelConfig
    from ..data import build_dataset
    from ..errors import UsageError
    from ..gan.models import build_models

    try:
        conditional = getattr(algorithm(run.attrs["algorithm"]), "conditional", False)
        spec = build_dataset(run.config["data"]["data"], labels=run.config["data"].get("labels", 0)).spec
        g, d = build_models(spec, ModelConfig(**run.config["model"]), conditional)
        return {"G": sum(p.numel() for p in g.parameters()), "D": sum(p.numel() for p in d.parameters())}
    except (UsageError, KeyError, TypeError):
        half = int(round(payload_per_rank(run) / 8))
        return {"G": half, "D": half}


def workload(runs: list[RunResult]) -> Workload:
    """The algorithm's per-step traffic from its runs (payload from the largest rank count)."""
    big = max(runs, key=lambda r: r.world_size)
    return Workload(parameter_counts(big), payload_per_rank(big), big.config)


def step_time(c: float, t_comm: float, overlap: float = 0.0) -> float:
    """T = C + T_comm - min(f T_comm, C): ``overlap`` f of the communication hides behind the
    compute C, never more than C (module docstring)."""
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap fraction must be in [0, 1], got {overlap}")
    return c + t_comm - min(overlap * t_comm, c)


def project(algo: str, net: NetworkModel, work: Workload, c1: float, scaling: str,
            ranks: list[int], overlap: float = 0.0) -> list[tuple[int, float, float]]:
    """(M, predicted step time, predicted efficiency) for each M, from C(1) = ``c1``, with a
    fraction ``overlap`` of the communication hidden behind compute."""
    out = []
    t1 = step_time(c1, comm_time(algo, net, 1, work), overlap)
    for m in ranks:
        c = c1 if scaling == "weak" else c1 / m
        t = step_time(c, comm_time(algo, net, m, work), overlap)
        out.append((m, t, t1 / t if scaling == "weak" else t1 / (m * t)))
    return out
