"""Steps 4 and 5 of an exchange: a compressed payload crosses the ranks and comes back as the mean.

:func:`collect` turns this rank's payload into Delta = (1/M) sum_m decompress(payload_m), identical
on every rank, with one collective per round:

* summable payloads (identity, fp16, bf16, randk, powersgd: each compressor says, ``summable``) are
  concatenated and allreduced, then decompressed once; a multi-round compressor's later payloads
  are built from the previous round's sum (``Compressor.next_round``), one allreduce each;
* the others are concatenated into one byte buffer per rank (:func:`to_bytes`) and allgathered;
  every rank decompresses every rank's payload into one buffer, adding them in rank order.

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

from contextlib import AbstractContextManager, nullcontext
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
    nbytes = sum(t.numel() * t.element_size() for t in payload)
    signature = (compressor.name, tuple((tuple(t.shape), t.dtype) for t in payload))
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
            summed = [p.view_as(t) for p, t in zip(buf.split([t.numel() for t in payload]), payload)]
        with phase("compress"):
            return compressor.decompress(summed, ctx).div_(comm.size)
    with phase("comm"):
        gathered = comm.allgather(to_bytes(payload), counts=[nbytes] * comm.size)
    with phase("compress"):
        total = compressor.decompress(from_bytes(gathered[0], payload), ctx)
        for g in gathered[1:]:
            compressor.decompress_add(from_bytes(g, payload), ctx, total)
        return total.div_(comm.size)


def to_bytes(payload: Payload) -> torch.Tensor:
    """The payload tensors' bytes, concatenated (widest dtypes first, so every part stays aligned)."""
    if len(payload) == 1:
        return payload[0].reshape(-1).contiguous().view(torch.uint8)
    order = sorted(range(len(payload)), key=lambda i: -payload[i].element_size())
    return torch.cat([payload[i].reshape(-1).contiguous().view(torch.uint8) for i in order])


def from_bytes(wire: torch.Tensor, like: Payload) -> Payload:
    """Inverse of :func:`to_bytes`: tensors shaped and typed like ``like``, viewing ``wire``."""
    if wire.storage_offset() % 8:
        wire = wire.clone()  # another rank's slice of a gather buffer may start unaligned
    order = sorted(range(len(like)), key=lambda i: -like[i].element_size())
    out: list[torch.Tensor | None] = [None] * len(like)
    offset = 0
    for i in order:
        n = like[i].numel() * like[i].element_size()
        out[i] = wire[offset:offset + n].view(like[i].dtype).view(like[i].shape)
        offset += n
    return out
