"""Small C kernels, compiled on first use for this host's CPU and loaded with ctypes.

Some hot loops cannot be written in eager torch without several passes over memory (the scaled
sign compressor needs ||x||_1 and the packed sign bits of the same buffer). Their C sources ship
next to this module; :func:`load` compiles one with ``$CC`` (default ``cc``) at
``-O3 -march=native`` into ``<cache>/native/<name>-<key>.so``, where the key hashes the source, the
compiler's version, the flags and this CPU's feature flags, so nodes of a heterogeneous cluster
sharing one home directory never load each other's builds. Several ranks may build at once: each
writes its own temporary file and renames it into place atomically.

``$HPCGAN_NATIVE=0`` disables the kernels; without a working compiler they are unavailable too.
Either way callers fall back to their torch implementation (:func:`load` returns None and says
why once through the logger).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from ..log import get_logger
from ..cache import cache_dir

NATIVE_ENV = "HPCGAN_NATIVE"
FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared", "-std=c11")


def _cpu_features() -> str:
    """The CPU's feature flags (Linux), else the processor name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler_id(cc: list[str]) -> str:
    out = subprocess.run(cc + ["--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else ""


def _build(source: Path, cc: list[str]) -> Path:
    version = _compiler_id(cc)
    if not version:
        raise OSError(f"no working C compiler ({shlex.join(cc)} --version failed)")
    key = hashlib.sha256("\n".join([source.read_text(), version, " ".join(FLAGS), platform.machine(),
                                    _cpu_features()]).encode()).hexdigest()[:16]
    target = cache_dir() / "native" / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run(cc + list(FLAGS) + ["-o", tmp, str(source)], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise OSError(f"{shlex.join(cc)} failed on {source.name}: {done.stderr.strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@lru_cache(maxsize=None)
def load(name: str) -> ctypes.CDLL | None:
    """The compiled kernels of ``<name>.c`` (next to this module), or None if unavailable."""
    if os.environ.get(NATIVE_ENV, "1") == "0":
        return None
    try:
        return ctypes.CDLL(str(_build(Path(__file__).with_name(f"{name}.c"),
                                      shlex.split(os.environ.get("CC", "cc")))))
    except (OSError, subprocess.SubprocessError) as exc:
        get_logger().warning("native %s kernels unavailable, using torch: %s", name, exc)
        return None
