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

On the host, a small signature's send and receive buffers (M rows of at most 1 MiB in all), and
the receive buffer's views as M stacked payloads, are made once per communicator and thread and
reused (:class:`WireBuffers`): a small payload then costs its memmoves, the MPI call and the
compressor's kernels, not a dozen tensor allocations and views. Collectives on one communicator never run concurrently (its transport runs
them one at a time, and a blocking call waits for the transport first), and ``decompress_sum``
returns a new tensor, so nothing outlives a buffer's use.

A one-round summable payload is summed in place: the caller hands it over (error feedback has
already taken what it needs). Multi-round payloads are copied, since the compressor's context keeps
them for the next round.
"""
from __future__ import annotations

import ctypes
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from typing import Any, Callable, Sequence

import torch

from ..comm import Communicator
from ..compress import Compressor, Payload

Phase = Callable[[str], AbstractContextManager]


_UNTIMED = nullcontext()  # holds no state: one for every untimed phase


def untimed(name: str) -> AbstractContextManager:
    return _UNTIMED


def collect(comm: Communicator, compressor: Compressor, payload: Payload, ctx: Any,
            phase: Phase = untimed) -> torch.Tensor:
    """Delta = (1/M) sum_m decompress(payload_m) for this rank's ``(payload, ctx)``; ``phase`` times
    the collectives as "comm" and the local work between and after them as "compress"."""
    shapes = tuple([(t.shape, t.dtype) for t in payload])
    nbytes = _layout(shapes)[2]
    host = all(t.is_cpu for t in payload)
    with phase("comm"):
        comm.check_same_size_once((compressor.name, shapes), nbytes, "compressed payload")
    if compressor.summable:
        for r in range(compressor.rounds):  # one allreduce per round (PowerSGD: two)
            if r:
                with phase("compress"):
                    payload = compressor.next_round(summed, ctx)
                    shapes = tuple([(t.shape, t.dtype) for t in payload])
            if len(payload) == 1 and compressor.rounds == 1:  # handed over: summed in place
                buf = payload[0].reshape(-1)
                summed = [buf.view_as(payload[0])]
            else:  # a copy: the compressor's context keeps this round's payload
                buf, summed = summing_copy(comm, payload, shapes)
            with phase("comm"):
                comm.allreduce_(buf, average=False)
        with phase("compress"):
            return compressor.decompress(summed, ctx).div_(comm.size)
    if comm.size * nbytes <= WireBuffers.MAX_BYTES and host:
        buffers = WireBuffers.of(comm, shapes)
        with phase("comm"):
            comm.allgather_rows(buffers.load(payload), buffers.flat)
        stacked = buffers.stacked()
    else:
        with phase("comm"):
            stacked = from_bytes(comm.allgather_rows(to_bytes(payload, shapes)), shapes)
    with phase("compress"):
        return compressor.decompress_sum(stacked, ctx).div_(comm.size)


def summing_copy(comm: Communicator, payload: Payload, shapes: Shapes | None = None) -> tuple[torch.Tensor, Payload]:
    """A 1-D copy of the (one-dtype) payload to allreduce in place, and its views shaped like the
    payload; small host payloads reuse one buffer per communicator, thread and shapes (no
    concatenation, no views made per call). ``shapes``: the payload's (shape, dtype)s, if known."""
    shapes = shapes or tuple((t.shape, t.dtype) for t in payload)
    if _layout(shapes)[2] > WireBuffers.MAX_BYTES or not all(t.is_cpu for t in payload):
        flat, parts, _ = _sum_buffer(shapes, payload[0].device)
        for part, t in zip(parts, payload):
            part.copy_(t)
        return flat, parts
    flat, parts, offsets = comm.reused(("sum", shapes), lambda: _sum_buffer(shapes))
    _copy_into(flat, payload, offsets)
    return flat, parts


def _copy_into(buffer: torch.Tensor, payload: Payload, offsets: Sequence[int]) -> torch.Tensor:
    """``buffer`` (host) with each payload tensor's bytes at its byte offset, one memmove each."""
    base = buffer.data_ptr()
    for t, o in zip(payload, offsets):
        part = t.contiguous()  # held while memmove reads it
        ctypes.memmove(base + o, part.data_ptr(), part.nbytes)
    return buffer


def _sum_buffer(shapes: Shapes, device: torch.device | str = "cpu") -> tuple[torch.Tensor, Payload, list[int]]:
    """A 1-D buffer for payloads of ``shapes``, its views shaped like them and their byte offsets."""
    flat = torch.empty(sum(s.numel() for s, _ in shapes), dtype=shapes[0][1], device=device)
    parts = [p.view(s) for p, (s, _) in zip(flat.split([s.numel() for s, _ in shapes]), shapes)]
    return flat, parts, [p.data_ptr() - flat.data_ptr() for p in parts]


class WireBuffers:
    """One payload signature's reused host buffers on one communicator and thread: ``send`` (this
    rank's bytes), ``rows`` (every rank's, (M, bytes)) and :meth:`stacked`, ``rows`` seen as the M
    payloads stacked (:func:`from_bytes`): views made once, unless a row's length leaves later
    rows unaligned for a part's dtype (then copied at every call)."""

    #: payloads whose M rows take more are gathered into a new buffer at every call: there the
    #: allocation costs nothing next to the transfer, and a kept buffer would cost memory
    MAX_BYTES = 1 << 20

    def __init__(self, size: int, shapes: Shapes):
        self.shapes = shapes
        order, self.offsets, nbytes = _layout(shapes)
        self.send = torch.empty(nbytes, dtype=torch.uint8)
        self.rows = torch.empty(size, nbytes, dtype=torch.uint8)
        self.flat = self.rows.view(-1)  # what the allgather writes (a 1-D buffer takes no view per call)
        aligned = not shapes or nbytes % shapes[order[0]][1].itemsize == 0
        self._views = from_bytes(self.rows, shapes) if aligned else None

    @classmethod
    def of(cls, comm: Communicator, shapes: Shapes) -> "WireBuffers":
        return comm.reused(("gather", shapes), lambda: cls(comm.size, shapes))

    def stacked(self) -> Payload:
        return self._views if self._views is not None else from_bytes(self.rows, self.shapes)

    def load(self, payload: Payload) -> torch.Tensor:
        """``send`` holding the payload's bytes in wire order (one memmove per tensor)."""
        return _copy_into(self.send, payload, self.offsets)


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
    return _copy_into(torch.empty(nbytes, dtype=torch.uint8), payload, offsets)


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
