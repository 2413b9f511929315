"""Counter-based random numbers for the compressors: a pure function of (key, counter), so a draw is
reproducible from a seed and a call count (checkpointed), needs no generator state, and the C
kernels and the torch fallback compute the same bits.

* :func:`splitmix64` (Steele, Lea, Flood 2014): one 64-bit draw per Python-side counter, e.g. a
  random-k offset per tensor per call, or the 64-bit key of a call.
* :func:`uniform24`: one uniform per coordinate i of a call with key (k0, k1):
      h_i = mix32((i XOR k0) + k1 mod 2^32),   u_i = (h_i >> 8) 2^-24  in [0, 1)
  with mix32 the "lowbias32" integer hash (C. Wellons: xorshift-multiply, avalanche bias 0.17 of
  the best known): a call reads a fixed hashed sequence through its own key-dependent bijection of
  the indices, so draws are uniform and unrelated across coordinates and calls. 24 bits make u_i
  exactly representable in fp32. ``qsgd.c`` computes the same function.
"""
from __future__ import annotations

import torch

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
MIX1, MIX2 = 0x7FEB352D, 0x846CA68B


def splitmix64(z: int) -> int:
    """The splitmix64 output for state ``z`` (any int; taken mod 2^64)."""
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def call_key(seed: int, stream: int, calls: int) -> int:
    """A 64-bit key for call ``calls`` of random stream ``stream`` under ``seed``."""
    return splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ calls)


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """x * c mod 2^32 for int64 x in [0, 2^32), without overflowing int64."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 of int64 values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, MIX1)
    x = x ^ (x >> 15)
    x = _mul32(x, MIX2)
    return x ^ (x >> 16)


def uniform24(n: int, key: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """u_0..u_{n-1} (fp32, multiples of 2^-24 in [0, 1)) for the call with 64-bit ``key``."""
    k0, k1 = key & MASK32, key >> 32
    h = mix32(((torch.arange(n, dtype=torch.int64, device=device) ^ k0) + k1) & MASK32)
    return (h >> 8).to(torch.float32).mul_(2.0**-24)
