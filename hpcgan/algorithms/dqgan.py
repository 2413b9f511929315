"""DQGAN: quantized, error-compensated optimistic mirror descent (docs/ALGORITHMS.md section 1).

Every rank m keeps error buffers e^m (zero at start) and the same x_t = (theta, phi). G and D are
updated simultaneously, at the same point. The local direction d_t^m comes from ``--optimizer``
(:class:`~hpcgan.gan.optim.Direction`): d = g for ``omd`` (the paper's OMD, "theory mode"); the
rank's own Adam direction u = m_hat/(sqrt(v_hat)+eps) of its local gradient for ``oadam`` and
``adam`` ("quality mode"; moments local, never communicated). Per step t:

1. g_t^m = F(x_t; xi_t^m) (local batch b);  d_t^m = direction(g_t^m)
2. the step this rank sends, by ``--dqgan-variant`` (an :class:`Extrapolation` strategy):
   A, optimistic (default):  p_t^m = eta (2 d_t^m - d_{t-1}^m) + e_t^m      (d_{-1} = 0)
   B, optimistic:            p_t^m = eta d_t^m + e_t^m
   adam (not optimistic):    p_t^m = eta d_t^m + e_t^m
3. Delta_t^m = Q(p_t^m);  e_{t+1}^m = p_t^m - Delta_t^m   (one scale per parameter tensor, per
   network or per block of values: ``--granularity``, recorded in the config)
4. Delta_t = (1/M) sum_m Delta_t^m   -- one collective per bucket: allreduce for summable
   compressors, else allgather + decompress + mean on every rank
5. A and adam: x_{t+1} = x_t - Delta_t;   B: x_{t+1} = x_t - 2 Delta_t + Delta_{t-1}

Steps 1-3 are elementwise, so each ``--bucket-mb`` bucket forms its message as soon as backward
has produced its gradients, and its exchange (steps 2-4, :class:`~hpcgan.exchange.Exchange`) runs
while backward goes on; step 5 waits for every bucket. With ``--bucket-mb 0`` the whole vector is
one exchange after backward. All ranks apply the same Delta_t and stay bit-identical. The residual
lives in parameter units.
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

from ..compress import COMPRESSORS, build_compressor
from ..config import RunConfig
from ..errors import UsageError
from ..exchange.wire import Phase, untimed
from ..gan.optim import Direction
from ..log import get_logger
from ..netmodel import NetworkModel, Workload
from ..results.schema import StepStats
from .base import ALGORITHMS, Batch, GanAlgorithm, TrainContext

if TYPE_CHECKING:
    from ..results.recorder import Recorder


class Extrapolation:
    """Where the optimistic step happens: :meth:`message` turns the local direction of the values
    ``part`` into the step to compress (step 2, before error feedback; elementwise, so a step may
    come part by part), :meth:`apply` applies the averaged Delta (step 5)."""

    name: ClassVar[str]

    def __init__(self):
        self.prev: torch.Tensor | None = None   # d_{t-1}^m (A) or Delta_{t-1} (B)

    def message(self, d: torch.Tensor, lr: float, part: slice, like: torch.Tensor) -> torch.Tensor:
        """``like``: the whole vector (shape, dtype and device of the state)."""
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

    def message(self, d, lr, part, like):
        if self.prev is None:  # d_{-1} = 0
            self.prev = torch.zeros_like(like)
        p = d.mul(2 * lr).sub_(self.prev[part], alpha=lr)
        self.prev[part] = d
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
    """Steps 1b, 2 and 5 on one flat vector, model-free (tests run it on toy games in float64):
    :meth:`message` is the step a part of the vector sends (before error feedback, which the
    exchange adds), :meth:`apply` the averaged Delta. Call :meth:`begin` once per step first."""

    def __init__(self, lr: float, direction: Direction, extrapolation: Extrapolation, like: torch.Tensor,
                 phase: Phase = untimed):
        self.lr, self.direction, self.extrapolation = lr, direction, extrapolation
        self.like, self.phase = like, phase

    def begin(self) -> None:
        self.direction.begin()

    def message(self, part: slice, g: torch.Tensor) -> torch.Tensor:
        """Steps 1b-2 for the values ``part`` with local gradient ``g``: eta (2 d_t - d_{t-1}) (A) or eta d_t."""
        with self.phase("update"):
            d = self.direction.of(g, part)
        with self.phase("compress"):
            return self.extrapolation.message(d, self.lr, part, self.like)

    def apply(self, params: torch.Tensor, delta: torch.Tensor) -> None:
        """Step 5."""
        with self.phase("update"):
            self.extrapolation.apply(params, delta)

    def state_dict(self) -> dict[str, Any]:
        return {"extrapolation": self.extrapolation.state_dict(), "direction": self.direction.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.extrapolation.load_state_dict(state["extrapolation"])
        self.direction.load_state_dict(state["direction"])


@ALGORITHMS.register("dqgan")
class DQGAN(GanAlgorithm):
    summary = "quantized optimistic mirror descent with error feedback (DQGAN)"
    defaults = {"optimizer": "oadam", "compressor": "sign"}
    options = frozenset({"compressor", "compressor_options", "error_feedback", "granularity", "block_size",
                         "dqgan_variant", "bucket_mb", "backward_order"})
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
        cfg, c = self.cfg, self.cfg.comm
        self.comm.broadcast_(self.flat.params)
        self.compressor = build_compressor(c)
        self.update = DQGANUpdate(cfg.optim.lr, Direction(cfg.optim, self.flat.params), extrapolation(cfg),
                                  self.flat.params, self.timer)
        self.delta = torch.zeros_like(self.flat.params)
        groups = None if c.granularity == "tensor" else (lambda sizes: scale_groups(sizes, c.granularity, c.block_size))
        self.gradient_exchange(self.compressor, c.error_feedback, out=self.delta, groups=groups,
                               message=lambda bucket, grads: self.update.message(bucket.slice, grads))
        get_logger().info("dqgan: compressor %s, error feedback %s, %s direction, variant %s, %d bucket(s)",
                          c.compressor, "on" if c.error_feedback else "off", cfg.optim.optimizer,
                          self.update.extrapolation.name, len(self.exchange.buckets))

    def step(self, batch: Batch, t: int) -> StepStats:
        self._begin_step()
        self.update.begin()
        with self.timer("compute"):
            d_loss, g_loss = self.compute_gradients(batch)  # buckets' messages start from gradient hooks
        self.update.apply(self.flat.params, self.exchange.wait())
        return self._stats(d_loss, g_loss)

    def residual_norms(self) -> dict[str, float]:
        """||e^m|| of each network on this rank (0 before the first step)."""
        e = self.exchange.residual()
        return {name: float(e[sl].norm()) for name, sl in self.flat.ranges.items()}

    def after_step(self, recorder: "Recorder", step: int) -> None:
        if (step + 1) % self.cfg.run.log_every == 0:
            norms = self.comm.control.allgather(self.residual_norms())
            recorder.record_series("residual", step, {k: max(n[k] for n in norms) for k in norms[0]})

    def attrs(self) -> dict[str, Any]:
        return {**super().attrs(), "compressor": self.compressor.name}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "dqgan": self.update.state_dict(), "exchange": self.exchange.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.update.load_state_dict(state["dqgan"])
        self.exchange.load_state_dict(state["exchange"])
