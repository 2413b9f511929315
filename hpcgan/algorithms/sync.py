"""sync: synchronous data-parallel GAN training, the baseline every distributed method is judged by.

Per step, on every rank m with local batch xi_t^m:
    g_t^m = F(x_t; xi_t^m)                 (simultaneous G and D gradient, one flat buffer)
    g_t   = (1/M) sum_m g_t^m              (dense fp32 allreduces, one per --bucket-mb bucket, each
                                            started while backward computes the rest, as DDP does)
    x_{t+1} = U(x_t, g_t)                  (--optimizer: adam, omd or oadam; local arithmetic)
Ranks start from the same x_0 and apply the same g_t, so they stay identical. The buckets change
only which values are summed together: at 2 ranks every element is a + b either way (bit-identical
to --bucket-mb 0, tested); at more ranks the MPI library may pick another summation order for
another message size, so results agree to rounding.
"""
from __future__ import annotations

from typing import Any

from ..compress.base import Identity
from ..gan.optim import build_optimizer
from ..netmodel import NetworkModel, Workload
from ..results.schema import StepStats
from .base import ALGORITHMS, Batch, GanAlgorithm, TrainContext


@ALGORITHMS.register("sync")
class Sync(GanAlgorithm):
    summary = "synchronous data-parallel baseline: dense allreduce of the simultaneous gradient"
    choices = {**GanAlgorithm.choices, "optimizer": ("adam", "omd", "oadam")}
    options = frozenset({"bucket_mb", "backward_order"})
    comm_formula = "ring allreduce of 4d bytes: 2(M-1)(a + 4d/(MB)), in buckets behind backward"

    @classmethod
    def comm_time(cls, net: NetworkModel, m: int, work: Workload) -> float:
        return net.allreduce(4 * work.d, m)

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        self.comm.broadcast_(self.flat.params)
        self.opt = build_optimizer(self.flat.param_list, self.cfg.optim)
        # each bucket's gradients are averaged in place: the message is the gradient itself
        self.gradient_exchange(Identity(), error_feedback=False,
                               message=lambda bucket, grads: grads, out=self.flat.grads)

    def step(self, batch: Batch, t: int) -> StepStats:
        self._begin_step()
        with self.timer("compute"):
            d_loss, g_loss = self.compute_gradients(batch)  # buckets start from gradient hooks
        self.exchange.wait()
        with self.timer("update"):
            self.opt.step()
        return self._stats(d_loss, g_loss)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.opt.load_state_dict(state["opt"])
