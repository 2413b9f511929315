"""Scaled sign (1-bit) compressor, one fp32 scale per parameter tensor.

For each tensor x of length d:  Q(x) = (||x||_1 / d) * sign(x), where sign(0) is a pseudo-random
+-1 that changes every call: one bit cannot send 0, and a fixed sign(0) = +1 would move every
exactly-zero coordinate (dead ReLUs: half of a generator's gradient) the same way at every step;
a random sign averages to 0 over calls. Either way sign(x_i) x_i = |x_i|, so
<Q(x), x> = ||Q(x)||^2 = ||x||_1^2 / d and ||Q(x) - x||^2 = ||x||^2 - ||x||_1^2/d, i.e.
delta = ||x||_1^2 / (d ||x||_2^2) >= 1/d (docs/ALGORITHMS.md section 0).
Payload: the sign bits of the whole flat buffer packed 8 per byte (:mod:`.bits`), and the scales:
ceil(D/8) + 4 T bytes for D values in T tensors. Not summable (allgather + decompress + mean).
The sign bit is read straight from the IEEE-754 encoding; for +-0.0 it is bit 0 of
lowbias32((i + key) mod 2^32), i the index in the flat buffer and key = splitmix64(call count)
(checkpointed state, so a resumed run sends the same bits).

On CPU the work is done by the C kernels of ``sign1bit.c`` (:mod:`.native`): compress is one pass
that sums |x| and packs the bits, decompress one pass that writes the output. Eager torch needs
several passes for the same job; it is the fallback (device tensors, no C compiler, or
``$HPCGAN_NATIVE=0``) and produces the same bits. The kernels' scales are summed in fp64 over fp32
blocks, so they can differ from the fallback's in the last bit.
"""
from __future__ import annotations

import ctypes
import sys
from functools import lru_cache

import torch
import torch.nn.functional as F

from . import bits, native
from .counter import MASK32, mix32, splitmix64
from .base import COMPRESSORS, Compressor


#: row v = the 8 signs (+1 / -1) that packed byte v encodes (bit j set = element j negative)
_SIGNS = torch.tensor([[-1.0 if (v >> j) & 1 else 1.0 for j in range(8)] for v in range(256)])


@lru_cache(maxsize=1)
def _kernels() -> ctypes.CDLL | None:
    lib = native.load("sign1bit")
    if lib is not None:
        ptr = ctypes.c_void_p
        lib.hpcgan_sign_compress.argtypes = [ptr, ptr, ctypes.c_int64, ptr, ptr, ctypes.c_uint32]
        lib.hpcgan_sign_decompress.argtypes = [ptr, ptr, ctypes.c_int64, ptr, ptr, ctypes.c_int]
        lib.hpcgan_sign_isa.restype = ctypes.c_char_p
    return lib


def implementation() -> str:
    """What compresses CPU tensors here: ``c-avx2``, ``c-portable`` or ``torch``."""
    lib = _kernels()
    return f"c-{lib.hpcgan_sign_isa().decode()}" if lib is not None else "torch"


def _native(*tensors: torch.Tensor) -> ctypes.CDLL | None:
    """The C kernels if they are available and every tensor lives on the CPU."""
    return _kernels() if all(t.device.type == "cpu" for t in tensors) else None


@lru_cache(maxsize=8)
def _row_owners(sizes: tuple[int, ...]) -> tuple[torch.Tensor, list[int]]:
    """256 * (tensor owning element 8i) for every packed byte i, and the tensors' start offsets."""
    starts = torch.tensor((0,) + sizes[:-1]).cumsum(0)
    first = torch.arange(0, sum(sizes), 8)
    return 256 * (torch.searchsorted(starts, first, right=True) - 1), starts.tolist()


def call_key(calls: int) -> int:
    """The per-call key of the zero bits: a hash of the call count, in [0, 2^32) (plain Python
    integers: a tensor op here cost tens of microseconds per call on small tensors)."""
    return splitmix64(calls) & MASK32


@COMPRESSORS.register("sign")
class ScaledSign(Compressor):
    name, summable = "sign", False

    def __init__(self):
        if sys.byteorder != "little":
            raise RuntimeError("the sign compressor reads fp32 sign bits on little-endian hosts only")
        self.calls = 0

    def compress(self, x, sizes):
        flat = x.reshape(-1).to(torch.float32).contiguous()
        d = flat.numel()
        sizes = list(sizes) if sizes else [d]
        key = call_key(self.calls)
        self.calls += 1
        if _native(flat) is not None:
            return self._compress_native(flat, sizes, key), (x.shape, x.dtype, sizes)
        scales = torch.stack([seg.abs().sum() / n for seg, n in zip(flat.split(sizes), sizes)])
        buf = bits.flag_buffer(d, flat.device)
        buf[:d] = flat.view(torch.uint8)[3::4]  # high byte of each fp32 ...
        buf >>= 7                               # ... down to its sign bit
        zeros = (flat == 0).nonzero().view(-1)
        if len(zeros):                          # +-0: a hashed bit instead
            buf[zeros] = (mix32((zeros + key) & 0xFFFFFFFF) & 1).to(torch.uint8)
        return [bits.pack_flags(buf), scales], (x.shape, x.dtype, sizes)

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = int(state["calls"])

    def decompress(self, payload, ctx):
        packed, scales = payload
        shape, dtype, sizes = ctx
        d = sum(sizes)
        if _native(packed, scales) is not None:
            return self._decompress_native(packed, scales, sizes, torch.empty(d), False).view(shape).to(dtype)
        # One row gather writes the output: byte b of row i selects the 8 values s_t * (+-1) of
        # table t = owner of element 8i. Rows that straddle a tensor boundary are fixed after.
        owner, starts = _row_owners(tuple(sizes))
        tables = (_SIGNS.to(scales.device).unsqueeze(0) * scales.view(-1, 1, 1)).view(-1, 8)
        out = F.embedding(owner.to(packed.device) + packed, tables).view(-1)[:d]
        for t, start in enumerate(starts):
            end = min(-(-start // 8) * 8, start + sizes[t])
            if start % 8 and end > start:  # head of tensor t shares a row with tensor t - 1
                neg = bits.unpack(packed[start // 8:start // 8 + 1], 8)[start % 8:start % 8 + end - start]
                out[start:end] = scales[t] * (1.0 - 2.0 * neg.to(torch.float32))
        return out.view(shape).to(dtype)

    def decompress_add(self, payload, ctx, out):
        packed, scales = payload
        if _native(packed, scales, out) is None or out.dtype != torch.float32 or not out.is_contiguous():
            return super().decompress_add(payload, ctx, out)
        self._decompress_native(packed, scales, ctx[2], out, True)
        return out

    def decompress_sum(self, payloads, ctx):
        """The kernel once per rank's row, adding into one output (rank order, as the default)."""
        packed, scales = (native.rows_contiguous(t) for t in payloads)
        shape, dtype, sizes = ctx
        if _native(packed, scales) is None or scales.dtype != torch.float32 or dtype != torch.float32:
            return super().decompress_sum(payloads, ctx)  # (a wider dtype sums in that dtype)
        lengths, kernel = native.lengths(tuple(sizes)), _kernels().hpcgan_sign_decompress
        out = native.sum_rows(sum(sizes), [packed, scales],
                              lambda p, s, o, acc: kernel(p, lengths.data_ptr(), len(sizes), s, o, acc))
        return out.view(shape).to(dtype)

    @staticmethod
    def _compress_native(flat, sizes, key: int) -> list[torch.Tensor]:
        """The C kernel: packed sign bits and per-tensor scales of the contiguous fp32 ``flat``."""
        lengths = native.lengths(tuple(sizes))
        packed = torch.zeros(bits.packed_len(flat.numel()), dtype=torch.uint8)
        scales = torch.empty(len(sizes), dtype=torch.float32)
        _kernels().hpcgan_sign_compress(flat.data_ptr(), lengths.data_ptr(), len(sizes), packed.data_ptr(),
                                        scales.data_ptr(), key)
        return [packed, scales]

    @staticmethod
    def _decompress_native(packed, scales, sizes, out, accumulate: bool) -> torch.Tensor:
        """The C kernel: writes (or adds) the decompressed values into the fp32 buffer ``out``."""
        packed, scales = packed.contiguous(), scales.to(torch.float32).contiguous()
        lengths = native.lengths(tuple(sizes))
        _kernels().hpcgan_sign_decompress(packed.data_ptr(), lengths.data_ptr(), len(sizes), scales.data_ptr(),
                                          out.data_ptr(), int(accumulate))
        return out

    def delta(self, d: int) -> float:
        return 1.0 / d
