"""Checksummed files for metrics: weights, proxy classifiers, cached reference statistics.

Compute nodes are offline, so nothing here ever downloads: a file is either staged by the user and
its SHA-256 matches, or the caller gets a :class:`UsageError` that says how to stage it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError

def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str, what: str, how_to_obtain: str) -> Path:
    """``path`` if it exists and its SHA-256 is ``expected``; else a UsageError saying how to fix it."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} not found at {path}. {how_to_obtain}")
    got = sha256_file(path)
    if got != expected:
        raise UsageError(f"{what} at {path} has SHA-256 {got}, expected {expected}; "
                         f"the file is corrupt or not the right one. {how_to_obtain}")
    return path


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 over the raw bytes, dtypes and shapes of ``tensors`` (a dataset's identity)."""
    h = hashlib.sha256()
    for t in tensors:
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
