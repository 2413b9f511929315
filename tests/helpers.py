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

from hpcgan.results.reader import RunResult
from hpcgan.results.schema import SCHEMA

BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec") if (BIN / "mpiexec").exists() else shutil.which("mpiexec")


#: the communication backend the MPI communicator tests run on (`make test-mpi` runs them per backend)
TEST_BACKEND = os.environ.get("HPCGAN_TEST_BACKEND", "mpi")


def backend_communicator(**kw):
    """A communicator of the backend under test over every rank (``kw``: CommConfig fields); the
    test skips, on every rank alike, where that backend cannot be built here (e.g. no Horovod)."""
    import pytest

    from hpcgan.comm import build_communicator
    from hpcgan.config import CommConfig
    from hpcgan.errors import UsageError

    try:
        return build_communicator(CommConfig(backend=TEST_BACKEND, **kw), MPI.COMM_WORLD)
    except UsageError as e:
        pytest.skip(f"backend {TEST_BACKEND}: {e}")


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
        [{"rank": r, "local_rank": r, "host": "x", "device": "cpu", "threads": 1, "cpu_affinity": "0"} for r in range(world)]))
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


def make_cifar10(root: Path, per_batch: int = 12, seed: int = 7) -> dict:
    """cifar-10-batches-py/ as the real archive lays it out (pickle protocol 2, bytes keys, uint8
    (N, 3072) rows, label lists, batches.meta); returns {batch name: (images, labels)}. Each class
    has its own mean colour under the noise, so a classifier can learn them quickly."""
    import pickle

    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 160, (10, 3))
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    made = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        y = rng.integers(0, 10, per_batch)
        x = (palette[y][:, :, None] + rng.integers(0, 96, (per_batch, 3, 1024))).astype(np.uint8).reshape(per_batch, 3072)
        batch = {b"batch_label": f"batch {i}".encode(), b"labels": y.tolist(), b"data": x,
                 b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)]}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
        made[name] = (x, y.tolist())
    meta = {b"num_cases_per_batch": per_batch, b"num_vis": 3072, b"label_names": [f"class{c}".encode() for c in range(10)]}
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return made


def fake_run(algo: str, scaling: str, ranks: int, seed: int, wall: float, batch: int, real_per_batch: int = 1,
             threads: int = 1) -> RunResult:
    """An in-memory finished run: 12 steps (2 warm-up), the last rank the slowest at ``wall`` s per step."""
    n = 12
    steps = {c: np.zeros((n, ranks)) for c in ("t_compute", "t_compress", "t_comm", "t_update", "t_net_emulated", "cpu")}
    steps["wall"] = np.full((n, ranks), wall / 2)
    steps["wall"][:, -1] = wall  # the slowest rank decides
    steps["bytes_sent"] = np.zeros((n, ranks), dtype=np.int64)
    steps["real_samples"] = np.full((n, ranks), real_per_batch * batch, dtype=np.int64)
    steps["fake_samples"] = np.full((n, ranks), (real_per_batch + 1) * batch, dtype=np.int64)
    steps["step"] = np.repeat(np.arange(n)[:, None], ranks, axis=1)
    steps["wall"][:2] = 100.0  # warm-up, excluded
    attrs = {"algorithm": algo, "scaling": scaling, "world_size": ranks, "warmup_steps": 2, "finished_at": "x",
             "local_batch": batch, "global_batch": batch * ranks, "machine": "test",
             "ranks_json": json.dumps([{"threads": threads, "device": "cpu"}] * ranks)}
    return RunResult(Path(f"{algo}_{scaling}_{ranks}_{seed}.h5"), attrs, {"run": {"seed": seed}, "data": {"data": "mog8"}},
                     steps, {}, {})
