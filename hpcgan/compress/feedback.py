"""Error feedback (memory): the residual of each named buffer is added back before compressing.

For buffer ``name`` (e.g. "G", "D") with residual e (zero at start):
    p = x + e;  (payload, ctx) = Q.compress(p);  e <- p - Q.local(payload, ctx)
so that sum_t Q_t(p_t) + e_T = sum_t x_t (nothing is ever lost, only delayed), where Q_t(p_t) is
this rank's own compressed step. A one-round compressor knows Q(p) at once; a multi-round one
(PowerSGD: its projection needs the sum of every rank's first payload) only after the
communicator has run every round, so its residual is settled lazily, the next time the buffer's
residual is needed (its next ``compress``, ``residuals``, ``state_dict``).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from .base import Compressor, Payload


class ErrorFeedback:
    def __init__(self, compressor: Compressor, enabled: bool = True):
        self.compressor, self.enabled = compressor, enabled
        self._residuals: dict[str, torch.Tensor] = {}
        self._pending: dict[str, tuple[torch.Tensor, Payload, Any]] = {}  # multi-round: (p, payload, ctx)

    def compress(self, name: str, x: torch.Tensor, sizes: Sequence[int]) -> tuple[Payload, Any]:
        if not self.enabled:
            return self.compressor.compress(x, sizes)
        e = self.residual(name)
        p = x if e is None else x + e
        payload, ctx = self.compressor.compress(p, sizes)
        if self.compressor.rounds == 1:
            self._residuals[name] = p - self.compressor.local(payload, ctx)
        else:
            self._pending[name] = (p, payload, ctx)
        return payload, ctx

    def residual(self, name: str) -> torch.Tensor | None:
        """e of buffer ``name`` (None before its first step)."""
        if name in self._pending:
            p, payload, ctx = self._pending.pop(name)
            self._residuals[name] = p - self.compressor.local(payload, ctx)
        return self._residuals.get(name)

    @property
    def residuals(self) -> dict[str, torch.Tensor]:
        for name in list(self._pending):
            self.residual(name)
        return self._residuals

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.residuals.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._residuals = {k: v.clone() for k, v in state.items()}
        self._pending = {}
