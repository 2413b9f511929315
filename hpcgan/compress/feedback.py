"""Error feedback (memory): the residual of each named buffer is added back before compressing.

For buffer ``name`` (e.g. "G", "D") with residual e (zero at start):
    p = x + e;  (payload, ctx) = Q.compress(p);  e <- p - Q.decompress(payload, ctx)
so that sum_t decompress(payload_t) + e_T = sum_t x_t (nothing is ever lost, only delayed).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from .base import Compressor, Payload


class ErrorFeedback:
    def __init__(self, compressor: Compressor, enabled: bool = True):
        self.compressor, self.enabled = compressor, enabled
        self.residuals: dict[str, torch.Tensor] = {}

    def compress(self, name: str, x: torch.Tensor, sizes: Sequence[int]) -> tuple[Payload, Any]:
        if not self.enabled:
            return self.compressor.compress(x, sizes)
        e = self.residuals.get(name)
        p = x if e is None else x + e
        payload, ctx = self.compressor.compress(p, sizes)
        self.residuals[name] = p - self.compressor.decompress(payload, ctx)
        return payload, ctx

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.residuals.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.residuals = {k: v.clone() for k, v in state.items()}
