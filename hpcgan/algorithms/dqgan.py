"""DQGAN: quantized, error-compensated optimistic mirror descent (ALGORITHMS.md section 1).

Every rank m keeps error buffers e^m (zero at start), one per network ("G" and "D"), and the
same x_t = (theta, phi). G and D are updated simultaneously, at the same point. Per step t:

1. g_t^m = F(x_t; xi_t^m)                               (local batch b)
2. variant A (default): p_t^m = eta (2 g_t^m - g_{t-1}^m) + e_t^m      (g_{-1} = 0)
   variant B:           p_t^m = eta g_t^m + e_t^m
3. Delta_t^m = Q(p_t^m);  e_{t+1}^m = p_t^m - Delta_t^m   (per network, one scale per tensor)
4. Delta_t = (1/M) sum_m Delta_t^m   -- ONE collective over the G and D payloads joined:
   allreduce for summable compressors, else allgather + decompress + mean on every rank
5. variant A: x_{t+1} = x_t - Delta_t;   variant B: x_{t+1} = x_t - 2 Delta_t + Delta_{t-1}

All ranks apply the same Delta_t and stay bit-identical. Invariant: the virtual iterate
x~_t = x_t - (1/M) sum_m e_t^m follows exact OMD with the averaged gradient; with Q = identity
DQGAN is synchronous OMD with global batch M b. ``--no-error-feedback`` drops e (ablation).

Quality mode (``--optimizer oadam`` or ``adam``): workers send p_t^m = g_t^m + e_t^m, and the
averaged decompressed direction Delta_t is fed to that optimizer as the gradient (EF stays on the
workers). ``--optimizer omd`` is the plain rule above.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..bench import StepStats
from ..comm import Communicator
from ..comm.compress import Compressor, Payload, build_compressor
from ..comm.feedback import ErrorFeedback
from ..errors import UsageError
from ..log import get_logger
from ..optim import build_optimizer
from .base import ALGORITHMS, Batch, GanAlgorithm, TrainContext

RULES = ("A", "B", "opt")


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


class QuantizedOMD:
    """Steps 2-5 on one flat vector whose named parts ("G", "D") are compressed separately.

    ``rule`` is "A", "B" or "opt" (quality mode: the message is g + e and the caller's optimizer
    applies Delta_t). Model-free, so tests can run it on toy games in float64.
    """

    def __init__(self, parts: dict[str, tuple[slice, list[int]]], compressor: Compressor,
                 error_feedback: bool, lr: float, rule: str, comm: Communicator):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        self.parts, self.lr, self.rule, self.comm = parts, lr, rule, comm
        self.ef = ErrorFeedback(compressor, error_feedback)
        self.joint = JointPayload(compressor)
        self.prev: torch.Tensor | None = None  # g_{t-1}^m (A) or Delta_{t-1} (B)

    def message(self, grads: torch.Tensor) -> tuple[Payload, Any]:
        """Steps 2-3: this rank's compressed p_t^m (its residuals updated), as one payload."""
        if self.rule == "A":
            p = grads.mul(2 * self.lr)
            if self.prev is not None:
                p.sub_(self.prev, alpha=self.lr)
                self.prev.copy_(grads)
            else:
                self.prev = grads.clone()
        elif self.rule == "B":
            p = grads.mul(self.lr)
        else:
            p = grads.clone()
        parts = [self.ef.compress(name, p[sl], sizes) for name, (sl, sizes) in self.parts.items()]
        return self.joint.join(parts, [sum(sizes) for _, sizes in self.parts.values()])

    def average(self, payload: Payload, ctx: Any, timer=None) -> torch.Tensor:
        """Step 4: Delta_t, identical on every rank (one collective; ``timer`` splits its time
        into the collective, "comm", and decompression, "compress")."""
        return self.comm.aggregate(payload, ctx, self.joint, timer)

    def apply(self, params: torch.Tensor, delta: torch.Tensor) -> None:
        """Step 5 (rules A and B)."""
        if self.rule == "A":
            params.sub_(delta)
        elif self.rule == "B":
            params.sub_(delta, alpha=2.0)
            if self.prev is not None:
                params.add_(self.prev)
            self.prev = delta.clone()
        else:
            raise ValueError("rule 'opt' is applied by the caller's optimizer")

    def residual(self, like: torch.Tensor) -> torch.Tensor:
        """e^m over the whole flat vector shaped like ``like`` (zeros where none exists yet)."""
        out = like.new_zeros(like.shape)
        for name, (sl, _) in self.parts.items():
            if name in self.ef.residuals:
                out[sl] = self.ef.residuals[name]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"residuals": self.ef.state_dict(), "prev": None if self.prev is None else self.prev.clone(),
                "compressor": self.ef.compressor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ef.load_state_dict(state["residuals"])
        self.ef.compressor.load_state_dict(state["compressor"])
        self.prev = None if state["prev"] is None else state["prev"].clone()


@ALGORITHMS.register("dqgan")
class DQGAN(GanAlgorithm):
    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        cfg = self.cfg
        self.comm.broadcast_(self.flat.params)
        self.compressor = build_compressor(cfg.comm)
        rule = cfg.algo.dqgan_variant if cfg.optim.optimizer == "omd" else "opt"
        if rule == "opt" and cfg.algo.dqgan_variant != "A":
            raise UsageError("--dqgan-variant B needs --optimizer omd (quality mode has one variant)")
        self.opt = build_optimizer(self.flat.param_list, cfg.optim) if rule == "opt" else None
        parts = {n: (self.flat.ranges[n], self.flat.tensor_sizes(n)) for n in self.flat.names}
        self.q = QuantizedOMD(parts, self.compressor, cfg.comm.error_feedback, cfg.optim.lr, rule, self.comm)
        get_logger().info("dqgan: compressor %s, error feedback %s, %s", cfg.comm.compressor,
                          "on" if cfg.comm.error_feedback else "off",
                          f"variant {rule} (OMD)" if rule != "opt" else f"quality mode ({cfg.optim.optimizer})")

    def step(self, batch: Batch, t: int) -> StepStats:
        self._begin_step()
        with self.timer("compute"):
            d_loss, g_loss = self.compute_gradients(batch)
        with self.timer("compress"):
            payload, ctx = self.q.message(self.flat.grads)
        delta = self.q.average(payload, ctx, self.timer)
        with self.timer("update"):
            if self.opt is None:
                self.q.apply(self.flat.params, delta)
            else:
                self.flat.grads.copy_(delta)
                self.opt.step()
        return self._stats(d_loss, g_loss)

    def attrs(self) -> dict[str, Any]:
        return {**super().attrs(), "compressor": self.compressor.name}

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "dqgan": self.q.state_dict()}
        if self.opt is not None:
            state["opt"] = self.opt.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.q.load_state_dict(state["dqgan"])
        if self.opt is not None:
            self.opt.load_state_dict(state["opt"])
