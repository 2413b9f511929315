"""16-bit float compressors: fp16 and bf16.

Q(x) = float(lowp(x)), rounded to nearest even: delta = 1 - u^2 with u the unit roundoff
(|Q(x)_i - x_i| <= u |x_i| away from overflow/underflow). Summable: the sum travels in 16 bits.
Wire: 2 bytes per value.

A cast is bound by memory traffic. On CPU the casts are the C loops of ``cast.c`` (:mod:`.native`),
which write large outputs with streaming stores (an ordinary store first reads the line it writes);
elsewhere, or without the kernels, torch's ``Tensor.to``. Both round the same way and give the
same bits for every value but NaN (which stays NaN).
"""
from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import ClassVar

import torch

from ..config import CommConfig
from . import native
from .base import COMPRESSORS, Compressor


#: (from, to) -> the kernel of cast.c that casts
_KERNELS = {(torch.float32, torch.float16): "hpcgan_f32_to_f16", (torch.float16, torch.float32): "hpcgan_f16_to_f32",
            (torch.float32, torch.bfloat16): "hpcgan_f32_to_bf16",
            (torch.bfloat16, torch.float32): "hpcgan_bf16_to_f32"}


@lru_cache(maxsize=1)
def _kernels() -> ctypes.CDLL | None:
    lib = native.load("cast")
    if lib is None:
        return None
    lib.hpcgan_cast_isa.restype = ctypes.c_char_p
    if lib.hpcgan_cast_isa() == b"none":
        return None
    for fn in _KERNELS.values():
        getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    return lib


def implementation() -> str:
    """What casts CPU tensors here: ``c-avx512``, ``c-avx2`` or ``torch``."""
    lib = _kernels()
    return f"c-{lib.hpcgan_cast_isa().decode()}" if lib is not None else "torch"


def cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x.to(dtype)`` for casts between fp32 and ``dtype`` (fp16 or bf16), by the C kernels where
    they apply (CPU, contiguous); any other cast is torch's."""
    lib = _kernels() if x.device.type == "cpu" and x.is_contiguous() else None
    kernel = _KERNELS.get((x.dtype, dtype))
    if lib is None or kernel is None:
        return x.to(dtype)
    out = torch.empty(x.shape, dtype=dtype)
    getattr(lib, kernel)(x.data_ptr(), out.data_ptr(), x.numel())
    return out


class Cast(Compressor):
    """Q(x) = float(lowp(x)) for the 16-bit float type ``dtype`` with unit roundoff ``roundoff``."""

    summable: ClassVar[bool] = True
    dtype: ClassVar[torch.dtype]
    roundoff: ClassVar[float]

    def __init__(self, cfg: CommConfig | None = None):
        pass

    def compress(self, x, sizes):
        return [cast(x, self.dtype)], x.dtype

    def decompress(self, payload, ctx):
        return cast(payload[0], ctx)

    def delta(self, d: int) -> float:
        return 1.0 - self.roundoff**2


@COMPRESSORS.register("fp16")
class FP16(Cast):
    name, dtype, roundoff = "fp16", torch.float16, 2.0**-11


@COMPRESSORS.register("bf16")
class BF16(Cast):
    name, dtype, roundoff = "bf16", torch.bfloat16, 2.0**-8
