"""The ``sync`` step as a PyTorch user would write it, for ``hpcgan bench overhead``: three peers of
hpcgan's own step, on the same model, batch, latent stream and transport of ranks.

* ``plain``: the gradients of :func:`~hpcgan.gan.losses.simultaneous_gradients`, flattened with
  ``torch.cat``, summed by one allreduce (mpi4py ``Allreduce`` for ``--backend mpi``,
  ``torch.distributed.all_reduce`` for ``torch``), divided by M, handed to ``torch.optim.Adam``;
* ``ddp``: G and D each wrapped in ``DistributedDataParallel`` (the process group
  :func:`~hpcgan.comm.torchdist.init_process_group` picks: gloo on CPU; default 25 MB buckets), the
  two losses differentiated by ``backward(inputs=...)`` so that each network's gradients are those
  of its own loss (simultaneous GDA), DDP's buckets allreduced while the backward goes on; DDP at its
  defaults otherwise, as a user gets it (its buffers, e.g. BatchNorm's running statistics,
  broadcast from rank 0 at every forward);
* ``horovod``: plain G and D, the same two backward calls, ``hvd.DistributedOptimizer`` around Adam
  (Horovod's hooks allreduce each gradient as it is ready, averaged; ``step`` waits for them).

Every peer builds G and D from the same seed as hpcgan (identical initial weights), draws its latent
batch from its own generator seeded as hpcgan's, and applies the same averaged gradients, so its
parameters must equal hpcgan's bit for bit after any number of steps at 2 ranks (a sum of two
values is exact in any order, and a halving is exact): :meth:`PeerStep.params` lets the benchmark
check it.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from mpi4py import MPI

from ..config import RunConfig
from ..data import Dataset
from ..errors import UsageError
from ..gan.losses import LOSSES, critic_outputs, simultaneous_gradients
from ..gan.models import build_models, latent
from ..registry import Registry
from ..world import World, rank_seed

PEERS: Registry[type["PeerStep"]] = Registry("overhead peer")


class PeerStep:
    """G, D and Adam built as hpcgan builds them; ``__call__(batch)`` runs one step."""

    #: what the benchmark's table and target lines call it
    label: str = ""

    def __init__(self, cfg: RunConfig, dataset: Dataset, world: World, backend: str):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(rank_seed(cfg.run.seed, 0, "init"))
            self.G, self.D = build_models(dataset.spec, cfg.model, False)
        self.noise = torch.Generator().manual_seed(rank_seed(cfg.run.seed, world.rank, "noise"))
        self.loss, self.cfg, self.world, self.backend = LOSSES.get(cfg.model.loss), cfg, world, backend

    def adam(self) -> torch.optim.Adam:
        o = self.cfg.optim
        return torch.optim.Adam(self.params(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)

    def params(self) -> list[torch.nn.Parameter]:
        return [*self.G.parameters(), *self.D.parameters()]

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        return latent(x.shape[0], self.cfg.model.z_dim, self.noise)

    def backward(self, G, D, x: torch.Tensor) -> None:
        """G.grad <- grad_theta L_G and D.grad <- grad_phi L_D at the current point, through the
        modules ``G`` and ``D`` (possibly wrappers): D's gradients first, as hpcgan computes them."""
        z = self.latent(x)
        fake = G(z)
        d_real, d_fake = critic_outputs(D, x, fake, ())  # D sees both in one batch, as in hpcgan's step
        d_loss = self.loss.critic_loss(D, x, fake, d_real, d_fake, (), self.cfg.model.gp_weight, self.noise)
        d_loss.backward(inputs=list(self.D.parameters()), retain_graph=True)
        self.loss.generator(d_fake).backward(inputs=list(self.G.parameters()))

    def __call__(self, batch) -> None:
        raise NotImplementedError


@PEERS.register("plain")
class PlainStep(PeerStep):
    """Gradients, torch.cat, one allreduce, mean, Adam."""

    label = "plain PyTorch"

    def __init__(self, cfg, dataset, world, backend):
        super().__init__(cfg, dataset, world, backend)
        self.opt = self.adam()

    def allreduce(self, flat: torch.Tensor) -> None:
        if self.backend == "mpi":
            self.world.comm.mpi.Allreduce(MPI.IN_PLACE, flat.numpy(), op=MPI.SUM)
        else:
            dist.all_reduce(flat)

    def __call__(self, batch) -> None:
        x, _ = batch
        g_G, g_D, _, _ = simultaneous_gradients(self.G, self.D, self.loss, x, self.latent(x), None,
                                                self.cfg.model.gp_weight, self.noise)
        grads = [*g_G, *g_D]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.allreduce(flat)
        flat /= self.world.size
        for p, g in zip(self.params(), flat.split([g.numel() for g in grads])):
            p.grad = g.view_as(p)
        self.opt.step()


@PEERS.register("ddp")
class DDPStep(PeerStep):
    """G and D in DistributedDataParallel (default buckets), two backward calls, Adam."""

    def __init__(self, cfg, dataset, world, backend):
        super().__init__(cfg, dataset, world, backend)
        from ..comm.torchdist import init_process_group
        pg = init_process_group(world.comm.mpi)
        self.label = f"torch DDP ({pg})"
        self.Gd = torch.nn.parallel.DistributedDataParallel(self.G)
        self.Dd = torch.nn.parallel.DistributedDataParallel(self.D)
        self.opt = self.adam()

    def __call__(self, batch) -> None:
        x, _ = batch
        self.opt.zero_grad()
        self.backward(self.Gd, self.Dd, x)
        self.opt.step()


@PEERS.register("horovod")
class HorovodStep(PeerStep):
    """Plain G and D, two backward calls, hvd.DistributedOptimizer around Adam."""

    label = "Horovod DistributedOptimizer"

    def __init__(self, cfg, dataset, world, backend):
        super().__init__(cfg, dataset, world, backend)
        from ..comm.horovod import import_horovod
        hvd = import_horovod()
        if not hvd.is_initialized():
            hvd.init(comm=world.comm.mpi)
        if hvd.size() != world.size:
            raise UsageError("Horovod is already initialised over a different set of ranks")
        named = [*(("G." + n, p) for n, p in self.G.named_parameters()),
                 *(("D." + n, p) for n, p in self.D.named_parameters())]
        self.opt = hvd.DistributedOptimizer(self.adam(), named_parameters=named, op=hvd.Average)

    def __call__(self, batch) -> None:
        x, _ = batch
        self.opt.zero_grad()
        self.backward(self.G, self.D, x)
        self.opt.step()
