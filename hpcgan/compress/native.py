"""Small C kernels, compiled on first use for this host's CPU and loaded with ctypes.

Some hot loops cannot be written in eager torch without several passes over memory (the scaled
sign compressor needs ||x||_1 and the packed sign bits of the same buffer). Their C sources ship
next to this module; :func:`load` compiles one with ``$CC`` (default ``cc``) at
``-O3 -march=native`` into ``<cache>/native/<name>-<key>.so``, where the key hashes the source, the
compiler's version, the flags and this CPU's feature flags, so nodes of a heterogeneous cluster
sharing one home directory never load each other's builds. Several ranks may build at once: each
writes its own temporary file and renames it into place atomically.

Loading a library runs its code, so only this user's own builds are loaded: the cache folder is
created private (0700), and a folder or ``.so`` that is a symbolic link, belongs to someone else or
that others may write is never used (a shared ``$HPCGAN_CACHE`` is one such). Each build's SHA-256
is recorded beside it (``<name>-<key>.so.sha256``, written after the library) and checked before
loading, so a library that is not the one this user built there (0 bytes after a full disk, a file
copied in from elsewhere) is never loaded. A ``.so`` that fails either check is rebuilt; a folder
that fails the first is replaced, for this process, by a private temporary folder (removed once
the library is loaded).

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
import shutil
import stat
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

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


def private(path: Path) -> bool:
    """``path`` is this user's own, not a symbolic link, and writable by no one else."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return not stat.S_ISLNK(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def cache_folder() -> Path | None:
    """The private kernel cache folder, created 0700 if missing; None if it is not private."""
    folder = cache_dir() / "native"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return None
    return folder if private(folder) else None


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verified(target: Path) -> bool:
    """``target`` and its recorded digest are this user's own and agree: the build may be loaded."""
    record = target.with_name(target.name + ".sha256")
    try:
        return private(target) and private(record) and record.read_text().strip() == digest_of(target)
    except OSError:
        return False


def _key(source: Path, version: str) -> str:
    return hashlib.sha256("\n".join([source.read_text(), version, " ".join(FLAGS), platform.machine(),
                                      _cpu_features()]).encode()).hexdigest()[:16]


def _build(source: Path, cc: list[str], folder: Path) -> Path:
    """``folder``/<name>-<key>.so, compiled unless this user's build of it is already there."""
    version = _compiler_id(cc)
    if not version:
        raise OSError(f"no working C compiler ({shlex.join(cc)} --version failed)")
    target = folder / f"{source.stem}-{_key(source, version)}.so"
    if verified(target):
        return target
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    record = Path(tmp + ".sha256")
    try:
        done = subprocess.run(cc + list(FLAGS) + ["-o", tmp, str(source)], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise OSError(f"{shlex.join(cc)} failed on {source.name}: {done.stderr.strip()[-500:]}")
        os.chmod(tmp, 0o700)
        record.write_text(digest_of(Path(tmp)) + "\n")
        os.chmod(record, 0o600)
        os.replace(tmp, target)  # also replaces a .so that failed the check
        os.replace(record, target.with_name(target.name + ".sha256"))  # after it: a reader between the two rebuilds
    finally:
        for leftover in (tmp, record):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return target


@lru_cache(maxsize=None)
def load(name: str) -> ctypes.CDLL | None:
    """The compiled kernels of ``<name>.c`` (next to this module), or None if unavailable."""
    if os.environ.get(NATIVE_ENV, "1") == "0":
        return None
    source, cc = Path(__file__).with_name(f"{name}.c"), shlex.split(os.environ.get("CC", "cc"))
    try:
        folder = cache_folder()
        if folder is not None:
            return ctypes.CDLL(str(_build(source, cc, folder)))
        get_logger().warning("kernel cache %s is not private to this user: building %s in a temporary folder",
                             cache_dir() / "native", name)
        scratch = Path(tempfile.mkdtemp(prefix="hpcgan-native-"))
        try:
            return ctypes.CDLL(str(_build(source, cc, scratch)))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except (OSError, subprocess.SubprocessError) as exc:
        get_logger().warning("native %s kernels unavailable, using torch: %s", name, exc)
        return None


@lru_cache(maxsize=64)
def lengths(sizes: tuple[int, ...]) -> torch.Tensor:
    """Per-tensor lengths as the int64 array the kernels read, built once per layout."""
    return torch.tensor(sizes, dtype=torch.int64)


def rows_contiguous(t: torch.Tensor) -> torch.Tensor:
    """``t`` (leading dimension M) if each of its 1-D rows is contiguous in memory (the rows of a
    gather buffer seen as one payload part are, with gaps between them), else a contiguous copy."""
    return t if t.dim() == 2 and t.stride(1) == 1 else t.contiguous()


def sum_rows(d: int, stacked: list[torch.Tensor], kernel: Callable[..., Any]) -> torch.Tensor:
    """The fp32 sum over rows m = 0..M-1 of a decompression kernel's output: ``kernel(*row_m,
    out, accumulate)`` is called once per row, with the address of row m of each stacked tensor
    (leading dimension M, rows contiguous: :func:`rows_contiguous`), writing the first row into
    the d values at ``out`` and adding every later one, in row (rank) order."""
    out = torch.empty(d)
    bases = [(t.data_ptr(), t.stride(0) * t.element_size()) for t in stacked]
    for m in range(stacked[0].shape[0]):
        kernel(*(p + m * step for p, step in bases), out.data_ptr(), int(m > 0))
    return out
