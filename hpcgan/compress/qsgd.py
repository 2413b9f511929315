"""QSGD with s levels (Alistarh et al. 2017), scaled to be delta-approximate.

Per tensor x of length d, with u_i ~ U[0, 1) drawn per coordinate:
    l_i = floor(s |x_i| / ||x||_2 + u_i)  in {0..s},    Q~(x)_i = ||x||_2 sign(x_i) l_i / s
Q~ is unbiased with E||Q~(x) - x||^2 <= omega ||x||^2, omega = min(d/s^2, sqrt(d)/s). Sending
Q(x) = Q~(x) / (1 + omega) gives E||Q(x) - x||^2 <= (1 - 1/(1+omega)) ||x||^2: delta = 1/(1+omega).
Wire format: the signed level sign(x_i) l_i + s in {0..2s} as b = ceil(log2(2s+1)) bit planes, each
packed 8 per byte, plus one fp32 norm per tensor: b ceil(D/8) + 4 T bytes. Not summable.
Random draws use ``generator`` (default: torch's global generator, seeded per rank).
"""
from __future__ import annotations

import math

import torch

from ..config import CommConfig
from ..errors import UsageError
from . import bits
from .base import COMPRESSORS, Compressor


@COMPRESSORS.register("qsgd")
class QSGD(Compressor):
    name, summable = "qsgd", False

    def __init__(self, cfg: CommConfig | None = None, levels: int | None = None,
                 generator: torch.Generator | None = None):
        self.levels = levels if levels is not None else (cfg.levels if cfg is not None else 16)
        if self.levels < 1:
            raise UsageError(f"--levels must be >= 1, got {self.levels}")
        self.planes = math.ceil(math.log2(2 * self.levels + 1))
        self.generator = generator

    def omega(self, d: int) -> float:
        s = self.levels
        return min(d / s**2, math.sqrt(d) / s)

    def delta(self, d: int) -> float:
        return 1.0 / (1.0 + self.omega(d))

    def compress(self, x, sizes):
        flat = x.reshape(-1).to(torch.float32)
        d, s = flat.numel(), self.levels
        sizes = list(sizes) if sizes else [d]
        norms = torch.stack([seg.norm() for seg in flat.split(sizes)])
        inv = torch.where(norms > 0, s / norms, torch.zeros_like(norms))
        scaled = flat.abs() * torch.repeat_interleave(inv, torch.tensor(sizes))
        scaled += torch.rand(d, generator=self.generator)
        codes = scaled.floor_().clamp_(max=s).to(torch.int16)
        codes = torch.where(flat < 0, s - codes, s + codes)  # signed level + s, in 0..2s
        planes = [bits.pack((codes >> j) & 1) for j in range(self.planes)]
        return [torch.cat(planes), norms], (x.shape, x.dtype, sizes)

    def decompress(self, payload, ctx):
        packed, norms = payload
        shape, dtype, sizes = ctx
        d, s = sum(sizes), self.levels
        codes = torch.zeros(d, dtype=torch.int16)
        for j, plane in enumerate(packed.view(self.planes, -1)):
            codes |= bits.unpack(plane, d).to(torch.int16) << j
        out = (codes - s).to(torch.float32)
        for seg, n, norm in zip(out.split(sizes), sizes, norms.tolist()):
            seg.mul_(norm / (s * (1.0 + self.omega(n))))
        return out.view(shape).to(dtype)
