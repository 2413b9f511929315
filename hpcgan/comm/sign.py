"""Scaled sign (1-bit) compressor, one fp32 scale per parameter tensor.

For each tensor x of length d:  Q(x) = (||x||_1 / d) * sign(x)  (sign(0) = +1).
Then <Q(x), x> = ||Q(x)||^2 = ||x||_1^2 / d, so ||Q(x) - x||^2 = ||x||^2 - ||x||_1^2/d, i.e.
delta = ||x||_1^2 / (d ||x||_2^2) >= 1/d (ALGORITHMS.md section 0).
Payload: the sign bits of the whole flat buffer packed 8 per byte (:mod:`.bits`), and the scales:
ceil(D/8) + 4 T bytes for D values in T tensors. Not summable (allgather + decompress + mean).
The sign bit is read straight from the IEEE-754 encoding: the high byte of each little-endian fp32,
shifted right by 7 (a strided copy then a contiguous shift vectorizes better than ``x < 0``).
"""
from __future__ import annotations

import sys

import torch

from ..config import CommConfig
from . import bits
from .compress import COMPRESSORS, Compressor


@COMPRESSORS.register("sign")
class ScaledSign(Compressor):
    name, summable = "sign", False

    def __init__(self, cfg: CommConfig | None = None):
        if sys.byteorder != "little":
            raise RuntimeError("the sign compressor reads fp32 sign bits on little-endian hosts only")

    def compress(self, x, sizes):
        flat = x.reshape(-1).to(torch.float32).contiguous()
        d = flat.numel()
        sizes = list(sizes) if sizes else [d]
        scales = torch.stack([seg.abs().sum() / n for seg, n in zip(flat.split(sizes), sizes)])
        buf = bits.flag_buffer(d)
        buf[:d] = flat.view(torch.uint8)[3::4]  # high byte of each fp32 ...
        buf >>= 7                               # ... down to its sign bit
        return [bits.pack_flags(buf), scales], (x.shape, x.dtype, sizes)

    def decompress(self, payload, ctx):
        packed, scales = payload
        shape, dtype, sizes = ctx
        d = sum(sizes)
        negative = bits.unpack(packed, d)
        out = torch.empty(d, dtype=torch.float32)
        for s, neg, o in zip(scales.tolist(), negative.split(sizes), out.split(sizes)):
            torch.add(torch.tensor(s), neg, alpha=-2.0 * s, out=o)  # s - 2 s [x < 0]
        return out.view(shape).to(dtype)

    def delta(self, d: int) -> float:
        return 1.0 / d
