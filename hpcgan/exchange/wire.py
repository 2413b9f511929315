"""Steps 4 and 5 of an exchange: a compressed payload crosses the ranks and comes back as the mean.

:func:`collect` turns this rank's payload into Delta = (1/M) sum_m decompress(payload_m), identical
on every rank, with one collective per round:

* summable payloads (identity, fp16, bf16, randk, powersgd: each compressor says, ``summable``) are
  concatenated and allreduced, then decompressed once; a multi-round compressor's later payloads
  are built from the previous round's sum (``Compressor.next_round``), one allreduce each;
* the others are concatenated into one byte buffer per rank (:func:`to_bytes`) and allgathered
  as the rows of one (M, bytes) buffer; :func:`from_bytes` views it as the M payloads stacked and
  ``Compressor.decompress_sum`` adds their decompressions in rank order (one call, where the
  compressor has a kernel for it, instead of one decompression per rank).

The first time a payload signature (compressor, shapes, dtypes) is seen on a communicator, the
ranks check collectively that their payloads have the same size, and raise UsageError together
instead of hanging if not; later calls with that signature are one collective and nothing else, as
sync's plain allreduce is, so their latency compares fairly. This relies on a payload's size
depending only on the size of the compressed buffer (true of every registered compressor, every
round included, and tested).

A one-round summable payload is summed in place: the caller hands it over (error feedback has
already taken what it needs). Multi-round payloads are copied, since the compressor's context keeps
them for the next round.
"""
from __future__ import annotations

import ctypes
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from typing import Any, Callable

import torch

from ..comm import Communicator
from ..compress import Compressor, Payload

Phase = Callable[[str], AbstractContextManager]


def untimed(name: str) -> AbstractContextManager:
    return nullcontext()


def collect(comm: Communicator, compressor: Compressor, payload: Payload, ctx: Any,
            phase: Phase = untimed) -> torch.Tensor:
    """Delta = (1/M) sum_m decompress(payload_m) for this rank's ``(payload, ctx)``; ``phase`` times
    the collectives as "comm" and the local work between and after them as "compress"."""
    signature = (compressor.name, tuple((t.shape, t.dtype) for t in payload))
    nbytes = _layout(signature[1])[2]
    with phase("comm"):
        comm.check_same_size_once(signature, nbytes, "compressed payload")
    if compressor.summable:
        for r in range(compressor.rounds):  # one allreduce per round (PowerSGD: two)
            if r:
                with phase("compress"):
                    payload = compressor.next_round(summed, ctx)
            buf = payload[0].reshape(-1) if len(payload) == 1 else torch.cat([t.reshape(-1) for t in payload])
            if compressor.rounds > 1 and len(payload) == 1:
                buf = buf.clone()
            with phase("comm"):
                comm.allreduce_(buf, average=False)
            summed = [buf.view_as(payload[0])] if len(payload) == 1 else \
                [p.view_as(t) for p, t in zip(buf.split([t.numel() for t in payload]), payload)]
        with phase("compress"):
            return compressor.decompress(summed, ctx).div_(comm.size)
    with phase("comm"):
        rows = comm.allgather_rows(to_bytes(payload, signature[1]))
    with phase("compress"):
        return compressor.decompress_sum(from_bytes(rows, signature[1]), ctx).div_(comm.size)


Shapes = tuple[tuple[torch.Size, torch.dtype], ...]


@lru_cache(maxsize=256)
def _layout(shapes: Shapes) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """The wire layout of payloads of these (shape, dtype)s: the order the tensors travel in
    (widest dtypes first, so every part stays aligned), each one's byte offset, the total bytes."""
    order = tuple(sorted(range(len(shapes)), key=lambda i: -shapes[i][1].itemsize))
    offsets, offset = [0] * len(shapes), 0
    for i in order:
        offsets[i] = offset
        offset += shapes[i][0].numel() * shapes[i][1].itemsize
    return order, tuple(offsets), offset


def to_bytes(payload: Payload, shapes: Shapes | None = None) -> torch.Tensor:
    """The payload tensors' bytes, concatenated in wire order (host tensors by one memmove each:
    a small payload's concatenation in torch ops costs more than its collective); ``shapes``, the
    payload's (shape, dtype)s, if the caller has them."""
    if len(payload) == 1:
        return payload[0].reshape(-1).contiguous().view(torch.uint8)
    order, offsets, nbytes = _layout(shapes or tuple((t.shape, t.dtype) for t in payload))
    if any(t.device.type != "cpu" for t in payload):
        return torch.cat([payload[i].reshape(-1).contiguous().view(torch.uint8) for i in order])
    out = torch.empty(nbytes, dtype=torch.uint8)
    base = out.data_ptr()
    for t, o in zip(payload, offsets):
        part = t.contiguous()  # held while memmove reads it
        ctypes.memmove(base + o, part.data_ptr(), part.nbytes)
    return out


def from_bytes(wire: torch.Tensor, like: Payload | Shapes) -> Payload:
    """Inverse of :func:`to_bytes`: tensors shaped and typed like ``like`` (tensors, or their
    (shape, dtype)), viewing the 1-D ``wire``; for a 2-D ``wire`` of M payloads as rows, the M
    payloads stacked (each tensor with a leading dimension M). A part that would start unaligned
    for its dtype (another rank's slice of a gather buffer; rows of a length not divisible by
    the itemsize) is copied first."""
    shapes = like if isinstance(like, tuple) else tuple((t.shape, t.dtype) for t in like)
    offsets, rows = _layout(shapes)[1], wire.shape[:-1]
    out = []
    for (shape, dtype), o in zip(shapes, offsets):
        part = wire[..., o:o + shape.numel() * dtype.itemsize]
        if part.storage_offset() % dtype.itemsize or any(s % dtype.itemsize for s in part.stride()[:-1]):
            part = part.clone(memory_format=torch.contiguous_format)
        out.append(part.view(dtype).view(*rows, *shape))
    return out
