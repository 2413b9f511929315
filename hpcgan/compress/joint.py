"""JointPayload: the payloads of several buffers carried by one collective."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from .base import Compressor, Payload


class JointPayload:
    """The payloads of several buffers (G's, then D's) as one payload list, so that one
    ``Communicator.aggregate`` call -- one collective -- carries them all. ``decompress`` splits
    the list and decompresses each buffer with the inner compressor into its slice of one flat
    output; ``decompress_add`` adds each into its slice."""

    def __init__(self, inner: Compressor):
        self.inner, self.summable, self.name = inner, inner.summable, f"joint-{inner.name}"

    def join(self, parts: Sequence[tuple[Payload, Any]], lengths: Sequence[int]) -> tuple[Payload, Any]:
        """One payload from the (payload, ctx) of buffers of ``lengths`` values each."""
        payload = [t for p, _ in parts for t in p]
        return payload, ([len(p) for p, _ in parts], list(lengths), [ctx for _, ctx in parts])

    @staticmethod
    def _split(payload: Payload, ctx: Any):
        """(payload, ctx, offset, length) of each buffer."""
        counts, lengths, ctxs = ctx
        i = offset = 0
        for k, n, c in zip(counts, lengths, ctxs):
            yield payload[i:i + k], c, offset, n
            i, offset = i + k, offset + n

    def decompress(self, payload: Payload, ctx: Any) -> torch.Tensor:
        return torch.cat([self.inner.decompress(part, c).reshape(-1) for part, c, _, _ in self._split(payload, ctx)])

    def decompress_add(self, payload: Payload, ctx: Any, out: torch.Tensor) -> torch.Tensor:
        flat = out.view(-1)
        for part, c, offset, n in self._split(payload, ctx):
            self.inner.decompress_add(part, c, flat[offset:offset + n])
        return out
