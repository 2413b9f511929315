"""Test-local compressors (importable as ``toy_compressors``: tests/ is on sys.path).

They let DQGAN's tests exercise the non-summable (allgather) path without depending on the comm
branch's compressors; ``register()`` adds them to COMPRESSORS for runs built from a config.
"""
from __future__ import annotations

import math

import torch

from hpcgan.comm.compress import COMPRESSORS, Compressor


class TopK(Compressor):
    """Test-local top-k: per tensor, the ceil(ratio * n) largest |x_i| with int32 indices."""

    name, summable = "test-topk", False

    def __init__(self, ratio: float = 0.25):
        self.ratio = ratio

    def compress(self, x, sizes):
        values, indices, off = [], [], 0
        for n in sizes:
            k = max(1, math.ceil(self.ratio * n))
            idx = x[off:off + n].abs().topk(k).indices + off
            values.append(x[idx])
            indices.append(idx.to(torch.int32))
            off += n
        return [torch.cat(values), torch.cat(indices)], (x.numel(), x.dtype)

    def decompress(self, payload, ctx):
        n, dtype = ctx
        return torch.zeros(n, dtype=dtype).index_put_((payload[1].long(),), payload[0].to(dtype))


def register() -> None:
    """Make ``--compressor test-topk`` available in this process (idempotent)."""
    if "test-topk" not in COMPRESSORS:
        COMPRESSORS.register("test-topk")(lambda cfg: TopK(cfg.ratio))
