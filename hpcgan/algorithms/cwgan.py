"""cwgan: one conditional WGAN-GP trained data-parallel, the baseline of Parallel W-CGAN.

G(z, y) has a label embedding, D(x, y) is a projection critic (see ``--model``). Every rank m holds
the same (theta, phi) and its own shard of the data; one step, on every rank in lockstep:
    for i in 1..n_critic:
        g_phi^m = grad_phi L_D(theta, phi; x_i^m, y_i^m, z_i^m)   (local batch b, fakes G(z, y_i^m))
        g_phi   = (1/M) sum_m g_phi^m          (one dense fp32 allreduce of D's flat gradient)
        phi    <- Adam(phi, g_phi)             (then clip to [-c, c] with --loss wgan-clip)
    g_theta^m = grad_theta L_G(theta, phi; z^m, y^m), y^m uniform over the C labels
    g_theta   = (1/M) sum_m g_theta^m          (one dense fp32 allreduce of G's flat gradient)
    theta    <- Adam(theta, g_theta)
L_D, L_G of ``--loss`` (:mod:`hpcgan.gan.losses`; paper values: wgan-gp with lambda = 10,
n_critic = 5, Adam lr 1e-4, beta = (0.5, 0.9), hpcgan's defaults for this algorithm). Ranks start from the same x_0 and apply the same averaged gradients, so they
stay bit-identical. ``--budget`` is lockstep: rank 0's clock decides when every rank stops; a run of
SECONDS on M ranks spends M*SECONDS rank-seconds (as pcwgan's), here on one model that gets every
update: n_critic critic and one generator update per step (/steps/{d,g}_updates).
"""
from __future__ import annotations

from typing import Any

import torch

from ..data import Loader
from ..gan.losses import AlternatingPair
from ..gan.optim import build_optimizer
from ..metrics.sampling import LabelSampler, Sampler, label_proportions
from ..netmodel import NetworkModel, Workload
from ..results.schema import StepStats
from .base import ALGORITHMS, Batch, GanAlgorithm, TrainContext, WeakScaling
from .critic import alternating_step

#: the Parallel W-CGAN paper's settings, the defaults of pcwgan and of its baseline cwgan
WGAN_DEFAULTS = {"loss": "wgan-gp", "n_critic": 5, "lr": 1e-4, "beta1": 0.5, "beta2": 0.9}
WGAN_CHOICES = {"optimizer": ("adam",), "loss": ("wgan-gp", "wgan-clip", "ns")}


@ALGORITHMS.register("cwgan")
class CWGAN(GanAlgorithm):
    summary = "one conditional WGAN-GP, data-parallel (baseline of pcwgan)"
    conditional = True
    defaults = WGAN_DEFAULTS
    options = frozenset({"n_critic"})
    choices = WGAN_CHOICES
    comm_formula = "n_critic allreduces of D's 4d_D bytes + one of G's 4d_G: 2(M-1)(a + 4d_X/(MB)) each"
    weak_scaling = WeakScaling("labels", "conditional baseline of pcwgan: same label count per rank")

    @classmethod
    def comm_time(cls, net: NetworkModel, m: int, work: Workload) -> float:
        n_critic = work.setting("optim", "n_critic", 5)
        return n_critic * net.allreduce(4 * work.params["D"], m) + net.allreduce(4 * work.params["G"], m)

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        self.num_classes = ctx.dataset.spec.num_classes
        self.comm.broadcast_(self.flat.params)
        self.pair = AlternatingPair(self.G, self.D, self.loss, self.cfg.model.gp_weight)
        self.opt_G = build_optimizer(self.G.parameters(), self.cfg.optim)
        self.opt_D = build_optimizer(self.D.parameters(), self.cfg.optim)

    def make_loader(self) -> Loader:
        c = self.cfg
        return self.ctx.dataset.loader(c.data.batch_size * c.optim.n_critic, self.world.rank,
                                       self.world.size, c.run.seed)

    def _average(self, name: str) -> None:
        with self.timer("comm"):
            self.comm.allreduce_(self.flat.grads[self.flat.ranges[name]], average=True)

    def step(self, batch: Batch, t: int) -> StepStats:
        b, dev = self.cfg.data.batch_size, self.world.device
        x, y = (v.to(dev, non_blocking=True) for v in batch)
        self._begin_step()
        d_loss, g_loss = alternating_step(
            self.pair, [(real, (labels,)) for real, labels in zip(x.split(b), y.split(b))],
            lambda n: (torch.randint(self.num_classes, (n,), generator=self.noise, device=dev),),
            lambda n: self.latent(n, self.noise), self.noise, self.opt_D, self.opt_G, self.timer,
            self.consumed, self.updated, self._average)
        return self._stats(d_loss, g_loss)

    # -- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, labels: torch.Tensor) -> torch.Tensor:
        """G(z, c) for every entry c of ``labels`` (local; every rank holds the whole model)."""
        labels = labels.to(self.world.device)
        return self.G(self.latent(len(labels), self.eval_noise), labels).cpu()

    def samplers(self) -> dict[str, Sampler]:
        """Contiguous shares of the evaluation, labels interleaved in the data's proportions."""
        return {"": LabelSampler(self.sample, label_proportions(self.ctx.dataset))}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
