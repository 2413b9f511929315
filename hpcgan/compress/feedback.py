"""Error feedback: the memory of what compression left out, added back before the next compression.

For a buffer named ``name`` (a bucket, a DDP bucket, a network) with residual e (zero at start)
and this rank's own compressed value Q_m(p) (``Compressor.local``):

    p = compensate(name, x) = x + e          (before compressing)
    update(name, p, Q_m(p)):   e <- p - Q_m(p)

so that sum_t Q_m(p_t) + e_T = sum_t x_t: nothing is ever lost, only delayed (tested). A one-round
compressor knows Q_m(p) right after compressing; a multi-round one (PowerSGD, whose projection
needs every rank's first payload summed) once its last round has run, so the caller updates the
memory then. With error feedback off, ``compensate`` returns x and ``update`` keeps nothing.
Residuals of different names are independent, so buckets can be exchanged concurrently.
"""
from __future__ import annotations

import torch


class ErrorFeedback:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.residuals: dict[str, torch.Tensor] = {}

    def compensate(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """p = x + e of buffer ``name`` (x itself before its first update, or without feedback)."""
        e = self.residuals.get(name) if self.enabled else None
        return x if e is None else x + e

    def update(self, name: str, p: torch.Tensor, q: torch.Tensor) -> None:
        """e <- p - q, where q is this rank's own compressed value of p."""
        if self.enabled:
            self.residuals[name] = p - q

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.residuals.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.residuals = {k: v.clone() for k, v in state.items()}
