"""What a reader needs to know about one run before trusting its numbers: its label, its setup,
whether its ranks shared cores or GPUs, and its traffic per rank.

* :func:`label`: algorithm, compressor, topology and ranks, e.g. "dqgan · sign · 2 ranks" or
  "dposg · ring · 4 ranks" (a compressor or topology of "none" is left out; the scaling mode of a
  sweep is not part of it).
* :func:`oversubscription`: ranks > cores or ranks > GPUs on a host, from ``ranks_json`` (each
  rank's host, device, threads and CPU affinity); every table row and figure entry of such a run
  carries :data:`MARK`.
* :func:`bytes_per_rank_step`: bytes one rank hands to the transport per step (mean over ranks),
  comparable between runs of different rank counts, unlike the sum over ranks.
* :func:`comm_split`: exposed and hidden communication per step. ``t_comm`` is communication the
  step waited for; ``t_comm_hidden`` (results schema v4) is communication overlapped with compute.
  Files without that column hid nothing: 0.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..results.reader import RunResult

#: Appended to the label of a run whose ranks shared cores or GPUs.
MARK = "⚠"


def method(run: RunResult) -> str:
    """Algorithm, compressor and topology of a run, e.g. "dqgan · sign" (no rank count)."""
    parts = [str(run.attrs.get("algorithm", "?"))]
    for key in ("compressor", "topology"):
        value = str(run.attrs.get(key, "none"))
        if value and value != "none":
            parts.append(value)
    return " · ".join(parts)


def label(run: RunResult) -> str:
    """Algorithm, compressor, topology and ranks of a run (see the module docstring)."""
    return f"{method(run)} · {run.world_size} rank{'s' if run.world_size != 1 else ''}"


def marked(run: RunResult) -> str:
    """:func:`label` with :data:`MARK` when the run was oversubscribed."""
    return label(run) + (f" {MARK}" if oversubscription(run) else "")


def cores_of(affinity: str) -> set[int]:
    """Core ids of a ``cpu_affinity`` string such as "0-3,8" (empty for an empty string)."""
    out: set[int] = set()
    for part in filter(None, str(affinity).split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def oversubscription(run: RunResult) -> str | None:
    """Why the run's ranks shared hardware ("4 ranks on 2 cores of vm"), or None if they did not
    (or ``ranks_json`` is missing: files before schema v3).

    Per host: the ranks' threads against the cores their CPU affinities allow together, and the
    ranks on a GPU against the distinct GPUs they drive."""
    by_host: dict[str, list[dict]] = defaultdict(list)
    for r in run.ranks:
        by_host[str(r.get("host", "?"))].append(r)
    why = []
    for host, ranks in sorted(by_host.items()):
        cores = set().union(*(cores_of(r.get("cpu_affinity", "")) for r in ranks))
        threads = sum(max(1, int(r.get("threads", 1))) for r in ranks)
        if cores and threads > len(cores):
            what = f"{len(ranks)} ranks" + (f" x {threads // len(ranks)} threads" if threads > len(ranks) else "")
            why.append(f"{what} on {len(cores)} core{'s' if len(cores) != 1 else ''} of {host}")
        gpus = [r for r in ranks if str(r.get("device", "cpu")).startswith("cuda")]
        devices = {r.get("gpu_uuid") or f"{host}:{r.get('device')}" for r in gpus}
        if gpus and len(gpus) > len(devices):
            why.append(f"{len(gpus)} ranks on {len(devices)} GPU{'s' if len(devices) != 1 else ''} of {host}")
    return "; ".join(why) or None


def bytes_per_rank_step(run: RunResult) -> float:
    """Mean over steps and ranks of the bytes one rank handed to the transport per step."""
    return run.bytes_per_step() / run.world_size


def comm_split(run: RunResult) -> tuple[float, float]:
    """(exposed, hidden) communication per step [s]: median over timed steps of the mean over
    ranks of ``t_comm`` and of ``t_comm_hidden`` (0 where the file has no such column)."""
    def med(column: str) -> float:
        if column not in run.steps:
            return 0.0
        v = np.nanmean(run.timed(column).astype(np.float64), axis=1)
        return float(np.nanmedian(v)) if np.isfinite(v).any() else 0.0
    return med("t_comm"), med("t_comm_hidden")


def overlap_fraction(runs: list[RunResult]) -> float | None:
    """Measured fraction of communication hidden behind compute, hidden / (hidden + exposed), over
    ``runs`` (None when no run records hidden communication)."""
    splits = [comm_split(r) for r in runs if "t_comm_hidden" in r.steps]
    total = sum(e + h for e, h in splits)
    return sum(h for _, h in splits) / total if splits and total > 0 else None
