"""Compressors: delta-approximate operators Q with ||Q(x) - x||^2 <= (1 - delta) ||x||^2.

A compressor is stateless apart from its hyper-parameters and never sees the network:
``compress(x, sizes)`` returns ``(payload, ctx)``; the payload is the list of tensors that travel,
``ctx`` never leaves the rank; ``decompress(payload, ctx)`` rebuilds a dense tensor shaped like x.
``sizes`` are the per-tensor lengths of the flat buffer x (one scale per parameter tensor).
``summable`` compressors produce payloads whose elementwise sum is the payload of the sum, so the
communicator may allreduce them; the others are allgathered and decompressed one by one.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Sequence

import torch

from ..config import CommConfig
from ..registry import Registry

Payload = list[torch.Tensor]


class Compressor(ABC):
    name: ClassVar[str]
    summable: ClassVar[bool]

    @abstractmethod
    def compress(self, x: torch.Tensor, sizes: Sequence[int]) -> tuple[Payload, Any]: ...

    @abstractmethod
    def decompress(self, payload: Payload, ctx: Any) -> torch.Tensor: ...

    def delta(self, d: int) -> float:
        """Guaranteed delta for vectors of length d (a lower bound; 1 = exact)."""
        return 1.0

    def nbytes(self, payload: Payload) -> int:
        return sum(t.numel() * t.element_size() for t in payload)


CompressorBuilder = Callable[[CommConfig], Compressor]
COMPRESSORS: Registry[CompressorBuilder] = Registry("compressor")


@COMPRESSORS.register("identity")
class Identity(Compressor):
    """Q(x) = x: dense fp32, delta = 1."""

    name, summable = "identity", True

    def __init__(self, cfg: CommConfig | None = None):
        pass

    def compress(self, x, sizes):
        return [x], x.shape

    def decompress(self, payload, ctx):
        return payload[0].view(ctx)


def build_compressor(cfg: CommConfig) -> Compressor:
    return COMPRESSORS.get(cfg.compressor)(cfg)
