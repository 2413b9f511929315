"""DQGAN: quantized, error-compensated optimistic mirror descent (docs/ALGORITHMS.md section 1).

Every rank m keeps error buffers e^m (zero at start), one per network ("G" and "D"), and the same
x_t = (theta, phi). G and D are updated simultaneously, at the same point. The local direction
d_t^m comes from ``--optimizer`` (:class:`~hpcgan.gan.optim.Direction`): d = g for ``omd`` (the
paper's OMD, "theory mode"); the rank's own Adam direction u = m_hat/(sqrt(v_hat)+eps) of its
local gradient for ``oadam`` and ``adam`` ("quality mode"; moments local, never communicated).
Per step t:

1. g_t^m = F(x_t; xi_t^m) (local batch b);  d_t^m = direction(g_t^m)
2. the step this rank sends, by ``--dqgan-variant`` (an :class:`Extrapolation` strategy):
   A, optimistic (default):  p_t^m = eta (2 d_t^m - d_{t-1}^m) + e_t^m      (d_{-1} = 0)
   B, optimistic:            p_t^m = eta d_t^m + e_t^m
   adam (not optimistic):    p_t^m = eta d_t^m + e_t^m
3. Delta_t^m = Q(p_t^m);  e_{t+1}^m = p_t^m - Delta_t^m   (per network; one scale per parameter
   tensor, per network or per block of values: ``--granularity``, recorded in the config)
4. Delta_t = (1/M) sum_m Delta_t^m   -- ONE collective over the G and D payloads joined:
   allreduce for summable compressors, else allgather + decompress + mean on every rank
5. A and adam: x_{t+1} = x_t - Delta_t;   B: x_{t+1} = x_t - 2 Delta_t + Delta_{t-1}

All ranks apply the same Delta_t and stay bit-identical. The residual lives in parameter units.
Invariant (tested): the virtual iterate x~_t = x_t - (1/M) sum_m e_t^m follows the dense rule
with the averaged step, x~_{t+1} = x~_t - (1/M) sum_m (p_t^m - e_t^m): exact OMD with the averaged
gradient for ``omd``, dense local-(O)Adam with the averaged step for ``oadam``/``adam``. With
Q = identity DQGAN is that dense rule with global batch M b. ``--no-error-feedback`` drops e.

Outside the timed step, every ``--log-every`` steps, the largest residual norm over ranks of each
network, max_m ||e^m||, goes to /residual/{G,D} (uncounted control channel), so a blow-up is visible.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..comm import Communicator
from ..compress import COMPRESSORS, Compressor, Payload, build_compressor
from ..compress.feedback import ErrorFeedback
from ..compress.joint import JointPayload
from ..config import RunConfig
from ..errors import UsageError
from ..gan.optim import Direction
from ..log import get_logger
from ..netmodel import NetworkModel, Workload
from ..results.schema import StepStats
from .base import ALGORITHMS, Batch, GanAlgorithm, TrainContext

if TYPE_CHECKING:
    from ..results.recorder import Recorder


class Extrapolation:
    """Where the optimistic step happens: :meth:`message` turns the local direction into the step
    to compress (step 2, before error feedback), :meth:`apply` applies the averaged Delta (step 5)."""

    name: ClassVar[str]

    def __init__(self):
        self.prev: torch.Tensor | None = None   # d_{t-1}^m (A) or Delta_{t-1} (B)

    def message(self, d: torch.Tensor, lr: float) -> torch.Tensor:
        return d.mul(lr)

    def apply(self, params: torch.Tensor, delta: torch.Tensor) -> None:
        params.sub_(delta)

    def state_dict(self) -> dict[str, Any]:
        return {"prev": None if self.prev is None else self.prev.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prev = None if state["prev"] is None else state["prev"].clone()


class ExtrapolateInMessage(Extrapolation):
    """Variant A: p = eta (2 d_t - d_{t-1}); x <- x - Delta."""

    name = "A"

    def message(self, d, lr):
        p = d.mul(2 * lr)
        if self.prev is not None:
            p.sub_(self.prev, alpha=lr)
            self.prev.copy_(d)
        else:
            self.prev = d.clone()
        return p


class ExtrapolateAfterAverage(Extrapolation):
    """Variant B: p = eta d_t; x <- x - 2 Delta_t + Delta_{t-1}."""

    name = "B"

    def apply(self, params, delta):
        params.sub_(delta, alpha=2.0)
        if self.prev is not None:
            params.add_(self.prev)
        self.prev = delta.clone()


class NoExtrapolation(Extrapolation):
    """Plain (non-optimistic) step, for ``--optimizer adam``: p = eta d_t; x <- x - Delta."""

    name = "none"


def extrapolation(cfg: RunConfig) -> Extrapolation:
    if cfg.optim.optimizer == "adam":
        return NoExtrapolation()
    return ExtrapolateInMessage() if cfg.algo.dqgan_variant == "A" else ExtrapolateAfterAverage()


def scale_groups(sizes: list[int], granularity: str, block_size: int) -> list[int]:
    """The lengths the compressor scales separately within one network's buffer of tensors ``sizes``."""
    if granularity == "tensor":
        return list(sizes)
    total = sum(sizes)
    if granularity == "network":
        return [total]
    return [block_size] * (total // block_size) + ([total % block_size] if total % block_size else [])


class DQGANUpdate:
    """Steps 1b-5 on one flat vector whose named parts ("G", "D") are compressed separately.
    Model-free, so tests run it on toy games in float64."""

    def __init__(self, parts: dict[str, tuple[slice, list[int]]], compressor: Compressor,
                 error_feedback: bool, lr: float, direction: Direction, extrapolation: Extrapolation,
                 comm: Communicator):
        self.parts, self.lr, self.comm = parts, lr, comm
        self.direction, self.extrapolation = direction, extrapolation
        self.ef = ErrorFeedback(compressor, error_feedback)
        self.joint = JointPayload(compressor)

    def message(self, d: torch.Tensor) -> tuple[Payload, Any]:
        """Steps 2-3 for the local direction ``d`` = ``self.direction(g)`` (step 1b): this rank's
        compressed p_t^m (its residuals updated), as one payload."""
        p = self.extrapolation.message(d, self.lr)
        parts = [self.ef.compress(name, p[sl], sizes) for name, (sl, sizes) in self.parts.items()]
        return self.joint.join(parts, [sum(sizes) for _, sizes in self.parts.values()])

    def average(self, payload: Payload, ctx: Any, timer=None) -> torch.Tensor:
        """Step 4: Delta_t, identical on every rank (one collective; ``timer`` splits its time
        into the collective, "comm", and decompression, "compress")."""
        return self.comm.aggregate(payload, ctx, self.joint, timer)

    def apply(self, params: torch.Tensor, delta: torch.Tensor) -> None:
        """Step 5."""
        self.extrapolation.apply(params, delta)

    def residual_norms(self) -> dict[str, float]:
        """||e^m|| of each network on this rank (0 before the first step)."""
        return {name: float(self.ef.residuals[name].norm()) if name in self.ef.residuals else 0.0
                for name in self.parts}

    def residual(self, like: torch.Tensor) -> torch.Tensor:
        """e^m over the whole flat vector shaped like ``like`` (zeros where none exists yet)."""
        out = like.new_zeros(like.shape)
        for name, (sl, _) in self.parts.items():
            if name in self.ef.residuals:
                out[sl] = self.ef.residuals[name]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"residuals": self.ef.state_dict(), "extrapolation": self.extrapolation.state_dict(),
                "direction": self.direction.state_dict(), "compressor": self.ef.compressor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ef.load_state_dict(state["residuals"])
        self.ef.compressor.load_state_dict(state["compressor"])
        self.extrapolation.load_state_dict(state["extrapolation"])
        self.direction.load_state_dict(state["direction"])


@ALGORITHMS.register("dqgan")
class DQGAN(GanAlgorithm):
    summary = "quantized optimistic mirror descent with error feedback (DQGAN)"
    defaults = {"optimizer": "oadam", "compressor": "sign"}
    options = frozenset({"compressor", "compressor_options", "error_feedback", "granularity", "block_size",
                         "dqgan_variant"})
    choices = {**GanAlgorithm.choices, "optimizer": ("oadam", "omd", "adam")}
    comm_formula = "summable payload: ring allreduce 2(M-1)(a + p/(MB)); else allgather (M-1)(a + p/B); p measured"

    @classmethod
    def comm_time(cls, net: NetworkModel, m: int, work: Workload) -> float:
        summable = COMPRESSORS.get(work.setting("comm", "compressor", "sign")).summable
        return net.allreduce(work.payload, m) if summable else net.allgather(work.payload, m)

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        if cfg.optim.optimizer == "adam" and cfg.algo.dqgan_variant != "A":
            raise UsageError("--dqgan-variant B extrapolates after averaging: it needs an optimistic "
                             "--optimizer (oadam or omd), not adam")

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        cfg = self.cfg
        self.comm.broadcast_(self.flat.params)
        self.compressor = build_compressor(cfg.comm)
        c = cfg.comm
        parts = {n: (self.flat.ranges[n], scale_groups(self.flat.tensor_sizes(n), c.granularity, c.block_size))
                 for n in self.flat.names}
        self.update = DQGANUpdate(parts, self.compressor, cfg.comm.error_feedback, cfg.optim.lr,
                                  Direction(cfg.optim, self.flat.params), extrapolation(cfg), self.comm)
        get_logger().info("dqgan: compressor %s, error feedback %s, %s direction, variant %s", cfg.comm.compressor,
                          "on" if cfg.comm.error_feedback else "off", cfg.optim.optimizer,
                          self.update.extrapolation.name)

    def step(self, batch: Batch, t: int) -> StepStats:
        self._begin_step()
        with self.timer("compute"):
            d_loss, g_loss = self.compute_gradients(batch)
        with self.timer("update"):
            d = self.update.direction(self.flat.grads)
        with self.timer("compress"):
            payload, ctx = self.update.message(d)
        delta = self.update.average(payload, ctx, self.timer)
        with self.timer("update"):
            self.update.apply(self.flat.params, delta)
        return self._stats(d_loss, g_loss)

    def after_step(self, recorder: "Recorder", step: int) -> None:
        if (step + 1) % self.cfg.run.log_every == 0:
            norms = self.comm.control.allgather(self.update.residual_norms())
            recorder.record_series("residual", step, {k: max(n[k] for n in norms) for k in norms[0]})

    def attrs(self) -> dict[str, Any]:
        return {**super().attrs(), "compressor": self.compressor.name}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "dqgan": self.update.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.update.load_state_dict(state["dqgan"])
