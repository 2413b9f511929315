"""JointPayload: the payloads of several buffers carried by one collective."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .base import Compressor, Payload


@dataclass
class JointContext:
    """Per buffer: how many payload tensors it has in the current round, its length, its ctx."""

    counts: list[int]
    lengths: list[int]
    ctxs: list[Any]


class JointPayload:
    """The payloads of several buffers (G's, then D's) as one payload list, so that one
    ``Communicator.aggregate`` call -- one collective per round -- carries them all. ``decompress``
    splits the list and decompresses each buffer with the inner compressor into its slice of one
    flat output; ``decompress_add`` adds each into its slice; ``next_round`` (multi-round inner
    compressors) builds every buffer's next payload from its part of the sum."""

    def __init__(self, inner: Compressor):
        self.inner, self.summable, self.name = inner, inner.summable, f"joint-{inner.name}"
        self.rounds = inner.rounds

    def join(self, parts: Sequence[tuple[Payload, Any]], lengths: Sequence[int]) -> tuple[Payload, JointContext]:
        """One payload from the (payload, ctx) of buffers of ``lengths`` values each."""
        payload = [t for p, _ in parts for t in p]
        return payload, JointContext([len(p) for p, _ in parts], list(lengths), [ctx for _, ctx in parts])

    @staticmethod
    def _split(payload: Payload, ctx: JointContext):
        """(payload, ctx, offset, length) of each buffer."""
        i = offset = 0
        for k, n, c in zip(ctx.counts, ctx.lengths, ctx.ctxs):
            yield payload[i:i + k], c, offset, n
            i, offset = i + k, offset + n

    def next_round(self, summed: Payload, ctx: JointContext) -> Payload:
        parts = [self.inner.next_round(part, c) for part, c, _, _ in self._split(summed, ctx)]
        ctx.counts = [len(p) for p in parts]
        return [t for p in parts for t in p]

    def decompress(self, payload: Payload, ctx: JointContext) -> torch.Tensor:
        return torch.cat([self.inner.decompress(part, c).reshape(-1) for part, c, _, _ in self._split(payload, ctx)])

    def decompress_add(self, payload: Payload, ctx: JointContext, out: torch.Tensor) -> torch.Tensor:
        flat = out.view(-1)
        for part, c, offset, n in self._split(payload, ctx):
            self.inner.decompress_add(part, c, flat[offset:offset + n])
        return out
