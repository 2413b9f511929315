"""Compressors: delta-approximate operators Q with ||Q(x) - x||^2 <= (1 - delta) ||x||^2.

A compressor is stateless apart from its hyper-parameters and never sees the network:
``compress(x, sizes)`` returns ``(payload, ctx)``; the payload is the list of tensors that travel,
``ctx`` never leaves the rank; ``decompress(payload, ctx)`` rebuilds a dense tensor shaped like x.
``sizes`` are the per-tensor lengths of the flat buffer x (one scale per parameter tensor).
For non-summable compressors ``decompress`` returns a new tensor (never a view of the payload),
so the aggregate can accumulate into it. A payload's shapes depend only on the length of x and the
compressor's settings, so a buffer's payload has the same size on every rank at every step.
``summable`` compressors produce payloads whose elementwise sum is the payload of the sum, so the
communicator may allreduce them; the others are allgathered and decompressed one by one.

Registered here: identity, fp16, bf16. In their own modules: sign (:mod:`.sign`), topk and randk
(:mod:`.sparse`), qsgd (:mod:`.qsgd`). Bytes on the wire for d fp32 values (docs/ALGORITHMS.md section 0):
identity 4d, fp16/bf16 2d, sign d/8 + 4 per tensor, topk 8k, randk 4k, qsgd ~ d*ceil(log2(2s+1))/8 + 4.
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

    def decompress_add(self, payload: Payload, ctx: Any, out: torch.Tensor) -> torch.Tensor:
        """``out += decompress(payload, ctx)`` in place (aggregation of gathered payloads)."""
        return out.add_(self.decompress(payload, ctx))

    def state_dict(self) -> dict[str, Any]:
        """State that changes from call to call (checkpointed with the algorithm; most have none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

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


class Cast(Compressor):
    """Q(x) = float(lowp(x)): round to a 16-bit float; delta = 1 - u^2 with u the unit roundoff
    (|Q(x)_i - x_i| <= u |x_i| away from overflow/underflow). Summable: the sum travels in 16 bits."""

    summable: ClassVar[bool] = True
    dtype: ClassVar[torch.dtype]
    roundoff: ClassVar[float]

    def __init__(self, cfg: CommConfig | None = None):
        pass

    def compress(self, x, sizes):
        return [x.to(self.dtype)], x.dtype

    def decompress(self, payload, ctx):
        return payload[0].to(ctx)

    def delta(self, d: int) -> float:
        return 1.0 - self.roundoff**2


@COMPRESSORS.register("fp16")
class FP16(Cast):
    name, dtype, roundoff = "fp16", torch.float16, 2.0**-11


@COMPRESSORS.register("bf16")
class BF16(Cast):
    name, dtype, roundoff = "bf16", torch.bfloat16, 2.0**-8


def build_compressor(cfg: CommConfig) -> Compressor:
    return COMPRESSORS.get(cfg.compressor)(cfg)

