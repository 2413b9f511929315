"""Sparsifiers: top-k and random-k, k = ceil(ratio * D) coordinates of the flat buffer.

top-k keeps the k entries of largest |x_i|: ||Q(x) - x||^2 = sum of the D - k smallest x_i^2
<= (1 - k/D) ||x||^2, so delta >= k/D. Payload: values fp32 + indices int32 = 8k bytes. The
indices differ between ranks, so it is not summable.

random-k keeps k coordinates drawn uniformly without replacement from a stream that every rank
seeds identically and advances once per call, so all ranks keep the same coordinates and the
payloads (values only, 4k bytes) can be summed: E||Q(x) - x||^2 = (1 - k/D) ||x||^2, delta = k/D in
expectation. Ranks must call it in the same order (ErrorFeedback does, per buffer per step).
"""
from __future__ import annotations

import math

import torch

from ..config import CommConfig
from ..errors import UsageError
from .base import COMPRESSORS, Compressor


def _k(ratio: float, d: int) -> int:
    return max(1, math.ceil(ratio * d))


class Sparse(Compressor):
    def __init__(self, cfg: CommConfig | None = None, ratio: float | None = None):
        self.ratio = ratio if ratio is not None else (cfg.ratio if cfg is not None else 0.01)
        if not 0.0 < self.ratio <= 1.0:
            raise UsageError(f"--ratio must be in (0, 1], got {self.ratio}")

    def delta(self, d: int) -> float:
        return _k(self.ratio, d) / d

    @staticmethod
    def _scatter(values: torch.Tensor, index: torch.Tensor, shape, dtype) -> torch.Tensor:
        out = torch.zeros(math.prod(shape), dtype=values.dtype, device=values.device)
        out.index_copy_(0, index.long(), values)
        return out.view(shape).to(dtype)


@COMPRESSORS.register("topk")
class TopK(Sparse):
    name, summable = "topk", False

    def compress(self, x, sizes):
        flat = x.reshape(-1).to(torch.float32)
        index = flat.abs().topk(_k(self.ratio, flat.numel()), sorted=False).indices
        return [flat[index], index.to(torch.int32)], (x.shape, x.dtype)

    def decompress(self, payload, ctx):
        values, index = payload
        return self._scatter(values, index, *ctx)

    def decompress_add(self, payload, ctx, out):
        """Adds the k values at their indices (distinct, so the same sums as a dense add)."""
        values, index = payload
        out.view(-1).index_add_(0, index.long(), values.to(out.dtype))
        return out


@COMPRESSORS.register("randk")
class RandK(Sparse):
    name, summable = "randk", True

    def __init__(self, cfg: CommConfig | None = None, ratio: float | None = None, seed: int = 0):
        super().__init__(cfg, ratio)
        self.seed, self.calls = seed, 0

    def compress(self, x, sizes):
        flat = x.reshape(-1).to(torch.float32)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.calls)
        self.calls += 1
        index = torch.randperm(flat.numel(), generator=gen)[:_k(self.ratio, flat.numel())]
        return [flat[index]], (x.shape, x.dtype, index)

    def decompress(self, payload, ctx):
        shape, dtype, index = ctx
        return self._scatter(payload[0], index, shape, dtype)

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = int(state["calls"])
