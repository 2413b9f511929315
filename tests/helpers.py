"""Helpers shared by the test suites (importable as ``helpers``: tests/ is on sys.path)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

from hpcgan.results.schema import SCHEMA

BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec") if (BIN / "mpiexec").exists() else shutil.which("mpiexec")


def hpcgan_cmd(n: int, *args: str, python_args: tuple[str, ...] = ("-m", "hpcgan")) -> list[str]:
    """``mpiexec -n n python -m mpi4py <python_args> <args>`` as an argv list."""
    return [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", *python_args, *args]


def run_hpcgan(n: int, *args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kw.pop("env", {})}
    return subprocess.run(hpcgan_cmd(n, *args, **kw), capture_output=True, text=True, timeout=timeout, env=env)


def schema_attrs(world: int = 1) -> dict:
    """Placeholder-valued root attributes of the right types, for recorder tests."""
    attrs = {k: ("x" if t is str else 1 if t is int else 0.5) for k, t in SCHEMA.root_attrs.items()}
    attrs.update(world_size=world, config_json="{}", versions_json="{}", ranks_json=json.dumps(
        [{"rank": r, "local_rank": r, "host": "x", "device": "cpu", "threads": 1, "affinity": "0"} for r in range(world)]))
    del attrs["schema_version"], attrs["started_at"]
    return attrs


class CollectiveAssertionError(AssertionError):
    """Raised on every rank together by :func:`assert_all`."""


def assert_all(ok: bool, message: str = "", comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """Fail on every rank if ``ok`` is false on any rank; names the failing ranks."""
    flags = comm.allgather(bool(ok))
    if not all(flags):
        bad = [r for r, f in enumerate(flags) if not f]
        raise CollectiveAssertionError(f"{message} (failed on ranks {bad})")


def write_comm_file(path: Path, m: int, alpha: float, bandwidth: float) -> Path:
    """A ``hpcgan bench comm`` file (/comm layout) whose dense mpi allreduce times follow the ring
    model 2(M-1)(alpha + n/(M B)) exactly; a compressor row and a non-mpi row must be ignored."""
    sizes = [4, 64, 1024, 16384, 262144, 1048576]
    rows = [("mpi", "dense", s, 2 * (m - 1) * (alpha + s / (m * bandwidth))) for s in sizes]
    rows += [("mpi", "sign", 1024, 1.0), ("torch", "dense", 1024, 1.0)]
    with h5py.File(path, "w") as f:
        f.attrs.update(world_size=m, machine="synthetic", threads=1)
        for i, key in enumerate(("backend", "op")):
            f.create_dataset(f"comm/{key}", data=np.array([r[i] for r in rows], dtype=h5py.string_dtype()))
        f["comm/size"] = np.array([r[2] for r in rows], dtype=np.int64)
        f["comm/wire_bytes"] = np.array([r[2] for r in rows], dtype=np.int64)
        f["comm/iters"] = np.full(len(rows), 20, dtype=np.int64)
        for key in ("t_median", "t_min", "t_max"):
            f[f"comm/{key}"] = np.array([r[3] for r in rows])
    return path
