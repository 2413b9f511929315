"""cwgan: one conditional WGAN-GP trained data-parallel, the baseline of Parallel W-CGAN.

G(z, y) has a label embedding, D(x, y) is a projection critic (see ``--model``). Every rank m holds
the same (theta, phi) and its own shard of the data; one step, on every rank in lockstep:
    for i in 1..n_critic:
        g_phi^m = grad_phi L_D(theta, phi; x_i^m, y_i^m, z_i^m)   (local batch b, fakes G(z, y_i^m))
        g_phi   = (1/M) sum_m g_phi^m          (one dense fp32 allreduce of D's flat gradient)
        phi    <- Adam(phi, g_phi)             (then clip to [-c, c] with --wgan-variant clip)
    g_theta^m = grad_theta L_G(theta, phi; z^m, y^m), y^m uniform over the C labels
    g_theta   = (1/M) sum_m g_theta^m          (one dense fp32 allreduce of G's flat gradient)
    theta    <- Adam(theta, g_theta)
L_D, L_G as in :mod:`.wgan` (WGAN-GP: lambda = 10; paper values n_critic = 5, Adam lr 1e-4,
beta = (0.5, 0.9)). Ranks start from the same x_0 and apply the same averaged gradients, so they
stay bit-identical. ``--budget`` is lockstep: rank 0's clock decides when every rank stops, so the
same wall-clock budget as pcwgan buys M*b samples per critic update here.
"""
from __future__ import annotations

from typing import Any

import torch

from ..bench import StepStats
from ..data import Loader
from ..metrics import SampleFn
from ..optim import build_optimizer
from .base import ALGORITHMS, Batch, GanAlgorithm, TrainContext
from .wgan import WganPair


@ALGORITHMS.register("cwgan")
class CWGAN(GanAlgorithm):
    conditional = True

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        self.num_classes = ctx.dataset.spec.num_classes
        self.comm.broadcast_(self.flat.params)
        self.pair = WganPair(self.G, self.D, self.cfg.algo.wgan_variant, self.cfg.model.gp_weight)
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
        for real, labels in zip(x.split(b), y.split(b)):
            with self.timer("compute"):
                d_loss = self.pair.critic_backward(real, self.latent(len(real), self.noise), (labels,), self.noise)
            self._average("D")
            with self.timer("update"):
                self.opt_D.step()
                self.pair.after_critic_update()
        with self.timer("compute"):
            labels = torch.randint(self.num_classes, (b,), generator=self.noise, device=dev)
            g_loss = self.pair.generator_backward(self.latent(b, self.noise), (labels,))
        self._average("G")
        with self.timer("update"):
            self.opt_G.step()
        return self._stats(d_loss, g_loss)

    # -- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, labels: torch.Tensor) -> torch.Tensor:
        """G(z, c) for every entry c of ``labels`` (local; every rank holds the whole model)."""
        labels = labels.to(self.world.device)
        return self.G(self.latent(len(labels), self.eval_noise), labels).cpu()

    def sample_share(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's n samples; labels cycle over the classes across ranks (n_total/C each)."""
        start = self.world.comm.exscan(n) or 0
        labels = torch.arange(start, start + n) % self.num_classes
        return self.sample(labels), labels

    def samplers(self) -> dict[str, SampleFn]:
        return {"": self.sample_share}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
