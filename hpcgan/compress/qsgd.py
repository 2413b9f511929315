"""QSGD with s levels (Alistarh et al. 2017), scaled to be delta-approximate.

Per tensor x of length d, with u_i uniform in [0, 1):
    l_i = min(floor(s |x_i| / ||x||_2 + u_i), s)  in {0..s},    Q~(x)_i = ||x||_2 sign(x_i) l_i / s
Q~ is unbiased with E||Q~(x) - x||^2 <= omega ||x||^2, omega = min(d/s^2, sqrt(d)/s). Sending
Q(x) = Q~(x) / (1 + omega) gives E||Q(x) - x||^2 <= (1 - 1/(1+omega)) ||x||^2: delta = 1/(1+omega).
Wire format: the signed level sign(x_i) l_i + s in {0..2s} as b = ceil(log2(2s+1)) bit planes, each
packed 8 per byte, plus one fp32 norm per tensor: b ceil(D/8) + 4 T bytes. Not summable.

Randomness: u_i is a counter-based function of (seed, call, i) (:func:`.counter.uniform24`), so a
run is reproducible and resumable: ``seed`` defaults to ``torch.initial_seed()`` when the
compressor is built (hpcgan seeds torch per rank, so ranks round independently), and the call count
``calls`` is checkpointed with it.

On CPU (s <= 127) compress and decompress are the C kernels of ``qsgd.c`` (:mod:`.native`), one pass
each way over the values after the norms; the torch fallback (device tensors, no C compiler,
``$HPCGAN_NATIVE=0``) does the same fp32 operations in the same order and produces the same bits.
Both take the norms from the same torch call, s / ||x||_2 from one fp32 division and the scales
||x||_2 / (s (1 + omega)) from one fp64 division rounded to fp32.
"""
from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from ..config import Section, opt
from . import bits, native
from .base import COMPRESSORS, Compressor
from .counter import MASK32, call_key, uniform24

MAX_NATIVE_LEVELS = 127  # codes 0..2s fit a byte


@lru_cache(maxsize=1)
def _kernels() -> ctypes.CDLL | None:
    lib = native.load("qsgd")
    if lib is not None:
        ptr, i64, i32, u32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_uint32
        lib.hpcgan_qsgd_compress.argtypes = [ptr, ptr, i64, ptr, i32, u32, u32, i32, ptr]
        lib.hpcgan_qsgd_decompress.argtypes = [ptr, ptr, i64, ptr, ptr, i32, i32, ptr, ctypes.c_int]
        lib.hpcgan_qsgd_isa.restype = ctypes.c_char_p
    return lib


def implementation() -> str:
    """What quantizes CPU tensors here: ``c-avx2``, ``c-portable`` or ``torch``."""
    lib = _kernels()
    return f"c-{lib.hpcgan_qsgd_isa().decode()}" if lib is not None else "torch"


@lru_cache(maxsize=32)
def _denominators(sizes: tuple[int, ...], levels: int) -> torch.Tensor:
    """s (1 + omega(n_t)) per tensor, fp64: the scale of tensor t is ||x_t||_2 over it."""
    return torch.tensor([levels * (1.0 + min(n / levels**2, math.sqrt(n) / levels)) for n in sizes],
                        dtype=torch.float64)


@dataclass(frozen=True)
class QSGDOptions(Section):
    levels: int = opt(16, "QSGD quantization levels s", ge=1)


@COMPRESSORS.register("qsgd")
class QSGD(Compressor):
    name, summable = "qsgd", False
    Options = QSGDOptions

    def __init__(self, levels: int = QSGDOptions.levels, seed: int | None = None):
        self.levels = QSGDOptions(levels=levels).levels  # checked as declared
        self.planes = math.ceil(math.log2(2 * self.levels + 1))
        self.seed = torch.initial_seed() if seed is None else seed
        self.calls = 0

    def omega(self, d: int) -> float:
        s = self.levels
        return min(d / s**2, math.sqrt(d) / s)  # as in _denominators

    def delta(self, d: int) -> float:
        return 1.0 / (1.0 + self.omega(d))

    def _native(self, *tensors: torch.Tensor) -> ctypes.CDLL | None:
        if self.levels > MAX_NATIVE_LEVELS or any(t.device.type != "cpu" for t in tensors):
            return None
        return _kernels()

    def compress(self, x, sizes):
        flat = x.reshape(-1).to(torch.float32).contiguous()
        d, s = flat.numel(), self.levels
        sizes = tuple(sizes) if sizes else (d,)
        norms = flat.norm().reshape(1) if len(sizes) == 1 else torch.stack([seg.norm() for seg in flat.split(sizes)])
        key = call_key(self.seed, 1, self.calls)
        self.calls += 1
        lib = self._native(flat)
        if lib is None:
            packed = self._compress_torch(flat, sizes, norms, key)
        else:
            packed = torch.empty(self.planes * bits.packed_len(d), dtype=torch.uint8)  # the kernel writes every byte
            lib.hpcgan_qsgd_compress(flat.data_ptr(), native.lengths(sizes).data_ptr(), len(sizes), norms.data_ptr(), s,
                                     key & MASK32, key >> 32, self.planes, packed.data_ptr())
        return [packed, norms], (x.shape, x.dtype, sizes)

    def _compress_torch(self, flat, sizes, norms, key) -> torch.Tensor:
        s = self.levels
        inv = torch.where(norms > 0, torch.full_like(norms, s) / norms, 0.0)  # one fp32 division, as in qsgd.c
        scaled = flat.abs() * torch.repeat_interleave(inv, torch.tensor(sizes, device=flat.device))
        scaled += uniform24(flat.numel(), key, flat.device)
        levels = scaled.floor_().clamp_(max=s)
        codes = torch.where(flat < 0, s - levels, s + levels).to(torch.int32)  # signed level + s, in 0..2s
        return torch.cat([bits.pack((codes >> j) & 1) for j in range(self.planes)])

    def decompress(self, payload, ctx):
        packed, norms = payload
        shape, dtype, sizes = ctx
        d, s = sum(sizes), self.levels
        if self._native(packed, norms) is not None:
            out = self._decompress_native(packed, norms, sizes, torch.empty(d), False)
            return out.view(shape).to(dtype)
        # ||x_t||_2 / (s (1 + omega(n_t))) per tensor, in fp64 rounded to fp32 (as qsgd.c does)
        scales = (norms.double() / _denominators(sizes, s).to(norms.device)).to(torch.float32)
        codes = torch.zeros(d, dtype=torch.int32, device=packed.device)
        for j, plane in enumerate(packed.view(self.planes, -1)):
            codes |= bits.unpack(plane, d).to(torch.int32) << j
        out = (codes - s).to(torch.float32) * torch.repeat_interleave(scales, torch.tensor(sizes, device=packed.device))
        return out.view(shape).to(dtype)

    def decompress_add(self, payload, ctx, out):
        packed, norms = payload
        if self._native(packed, out) is None or out.dtype != torch.float32 or not out.is_contiguous():
            return super().decompress_add(payload, ctx, out)
        self._decompress_native(packed, norms, ctx[2], out.view(-1), True)
        return out

    def decompress_sum(self, payloads, ctx):
        """The kernel once per rank's row, adding into one output (rank order, as the default)."""
        packed, norms = (native.rows_contiguous(t) for t in payloads)
        shape, dtype, sizes = ctx
        if self._native(packed, norms) is None or dtype != torch.float32:
            return super().decompress_sum(payloads, ctx)  # (a wider dtype sums in that dtype)
        lib = _kernels()
        lengths, denominators = native.lengths(tuple(sizes)), _denominators(tuple(sizes), self.levels)
        out = native.sum_rows(sum(sizes), [packed, norms], lambda p, n, o, acc: lib.hpcgan_qsgd_decompress(
            p, lengths.data_ptr(), len(sizes), n, denominators.data_ptr(), self.levels, self.planes, o, acc))
        return out.view(shape).to(dtype)

    def _decompress_native(self, packed, norms, sizes, out, accumulate: bool) -> torch.Tensor:
        packed, norms, sizes = packed.contiguous(), norms.contiguous(), tuple(sizes)
        _kernels().hpcgan_qsgd_decompress(packed.data_ptr(), native.lengths(sizes).data_ptr(), len(sizes), norms.data_ptr(),
                                          _denominators(sizes, self.levels).data_ptr(), self.levels, self.planes,
                                          out.data_ptr(), int(accumulate))
        return out

    def state_dict(self):
        return {"seed": self.seed, "calls": self.calls}

    def load_state_dict(self, state):
        self.seed, self.calls = int(state["seed"]), int(state["calls"])
