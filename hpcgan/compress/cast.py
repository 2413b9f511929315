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

from . import native
from .base import COMPRESSORS, Compressor


#: (from, to) -> the kernel of cast.c that casts
_KERNELS = {(torch.float32, torch.float16): "hpcgan_f32_to_f16", (torch.float16, torch.float32): "hpcgan_f16_to_f32",
            (torch.float32, torch.bfloat16): "hpcgan_f32_to_bf16",
            (torch.bfloat16, torch.float32): "hpcgan_bf16_to_f32"}
#: 16-bit dtype -> the kernel of cast.c that sums y = lowp(fp32(x) + fp32(y)) in place
_SUMS = {torch.float16: "hpcgan_f16_add", torch.bfloat16: "hpcgan_bf16_add"}


@lru_cache(maxsize=1)
def _kernels() -> ctypes.CDLL | None:
    lib = native.load("cast")
    if lib is None:
        return None
    lib.hpcgan_cast_isa.restype = ctypes.c_char_p
    if lib.hpcgan_cast_isa() == b"none":
        return None
    for fn in (*_KERNELS.values(), *_SUMS.values()):
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


def sum_kernel(dtype: torch.dtype):
    """The C function ``(x, y, n)`` that sets ``y = lowp(fp32(x) + fp32(y))`` for n values of the
    16-bit float ``dtype`` at host addresses x and y (the correctly rounded 16-bit sum: see cast.c),
    or None where the kernels are unavailable."""
    lib = _kernels()
    return getattr(lib, _SUMS[dtype]) if lib is not None and dtype in _SUMS else None


def add_(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y = lowp(fp32(x) + fp32(y))`` in place for 16-bit float CPU tensors of one shape: the C
    kernel where available, else torch (same bits: both round the fp32 sum once, to nearest even)."""
    kernel = sum_kernel(y.dtype) if y.is_contiguous() and x.is_contiguous() else None
    if kernel is None:
        return y.copy_(x.float().add_(y.float()))
    kernel(x.data_ptr(), y.data_ptr(), y.numel())
    return y


class Cast(Compressor):
    """Q(x) = float(lowp(x)) for the 16-bit float type ``dtype`` with unit roundoff ``roundoff``."""

    summable: ClassVar[bool] = True
    dtype: ClassVar[torch.dtype]
    roundoff: ClassVar[float]

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
