"""Bit packing in plain torch, 8 flags per byte, without a numpy round trip.

Layout (numpy ``packbits(bitorder="little")``): flag ``8i + j`` is bit ``j`` of byte ``i``; the last
byte is zero-padded. Packing views 8 flag bytes (each 0 or 1) as one int64 ``u = sum_j b_j 2^(8j)``;
``u * 0x0102040810204080`` collects ``b_j`` at bit ``56 + j`` with no carries, so the top byte of
the (wrapping) product is the packed byte. Unpacking looks each byte up in a 256-entry table of
int64 words whose 8 bytes are its bits.
"""
from __future__ import annotations

import torch

_GATHER = 0x0102040810204080
_SPREAD = torch.tensor([sum(((v >> j) & 1) << (8 * j) for j in range(8)) for v in range(256)],
                       dtype=torch.int64)


def packed_len(n: int) -> int:
    return (n + 7) // 8


def flag_buffer(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A uint8 buffer for ``n`` flags, padded to whole bytes; write flags into ``[:n]``."""
    buf = torch.empty(packed_len(n) * 8, dtype=torch.uint8, device=device)
    buf[n:] = 0
    return buf


def pack_flags(buf: torch.Tensor) -> torch.Tensor:
    """Pack a :func:`flag_buffer` of 0/1 bytes (destroyed) into ``len(buf) / 8`` bytes."""
    words = buf.view(torch.int64)
    words.mul_(_GATHER)
    return words.view(torch.uint8)[7::8].clone()


def pack(flags: torch.Tensor) -> torch.Tensor:
    """Pack a 1-D bool or 0/1 uint8 tensor, 8 flags per byte."""
    buf = flag_buffer(flags.numel(), flags.device)
    buf[:flags.numel()] = flags.reshape(-1)
    return pack_flags(buf)


def unpack(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` flags of ``packed`` as a 0/1 uint8 tensor."""
    return _SPREAD.to(packed.device).index_select(0, packed.to(torch.int32)).view(torch.uint8)[:n]
