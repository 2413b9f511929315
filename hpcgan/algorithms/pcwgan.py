"""pcwgan: Parallel W-CGAN, communication-free training of one unconditional WGAN per label.

C labels, P ranks, R replicas (``--replicas``, default 1). Generator units u = k*C + c (label c,
replica k, independent initial seeds per unit); rank r owns the units with u mod P = r, so with
R = 1 rank r owns the labels {c : c mod P = r}. P > C*R is a UsageError: every rank needs a unit.
For each owned unit, an unconditional pair (G_c, D_c) trained only on images of class c, from a
per-label view of the data built once from the dataset's class index:
    L_D = E[D(G(z))] - E[D(x)] + lambda E[(||grad_xhat D(xhat)||_2 - 1)^2],  xhat = eps x + (1-eps) G(z)
    L_G = -E[D(G(z))];   n_critic critic updates per generator update; Adam (--lr, --beta1, --beta2)
(paper values, hpcgan's defaults here: lambda = 10, n_critic = 5, lr 1e-4, beta = (0.5, 0.9);
``--loss wgan-clip|ns`` selects weight clipping or the predecessor's BCE loss, see
:mod:`hpcgan.gan.losses`; the critic loop is :func:`.critic.alternating_step`).

Schedule: round-robin per step. Step t of rank r trains its unit number t mod n_r (one WGAN
iteration: n_critic critic updates + one generator update), so under ``--steps T`` every owned unit
gets floor(T/n_r) or ceil(T/n_r) steps. Budget: ``--budget SECONDS`` means, for every algorithm,
SECONDS of wall clock on every rank, P*SECONDS rank-seconds in all; here each rank stops on its own
clock, and each of its n_r units gets about SECONDS/n_r of it: with R = 1, label c gets
P*SECONDS/C rank-seconds when P divides C. The steps, generator and critic updates each label's
kept generator got are written to /labels/{steps,g_updates,d_updates}.

No communication during training: the training communicator is never called, so bytes_sent = 0
and t_comm = 0 are recorded, and the algorithm is not lockstep: each rank records its rows and
checkpoints (:meth:`state_dict`: every owned unit) on its own clock, and ``--resume`` continues each
rank from its own step (:mod:`hpcgan.train`). At the end (:meth:`finish`, on the
uncounted control channel): with R > 1, each label keeps the replica whose samples are closest to the
label's real data in sliced Wasserstein distance (a local, classifier-free proxy); /labels/owner
(label -> rank), /labels/steps and, with R > 1, /labels/replica_{steps,score} are written.
Together the kept generators form one class-conditional model: :meth:`PCWGAN.generate` routes label
c to G_c. Evaluation (:meth:`samplers`): sample i of an evaluation has label eval_labels(i),
interleaved in the data's label proportions (:mod:`hpcgan.metrics.sampling`), and the rank holding
that label draws it, locally; the ranks' statistics add up to those of the whole model. So an
evaluation during training (``--eval-every``) needs no other rank: each rank scores its labels at
steps of its own clock and the scores are merged at the end (:mod:`hpcgan.metrics.deferred`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import Loader
from ..errors import UsageError
from ..gan.losses import LOSSES, AlternatingPair
from ..gan.models import build_models, latent
from ..gan.optim import build_optimizer
from ..metrics.sampling import LabelSampler, Sampler, label_proportions
from ..netmodel import NetworkModel, Workload
from ..results.model import Generators
from ..results.schema import StepStats
from ..world import rank_seed
from .base import ALGORITHMS, Algorithm, Batch, TrainContext, WeakScaling
from .critic import alternating_step
from .cwgan import WGAN_CHOICES, WGAN_DEFAULTS

SCORE_SAMPLES = 512      # samples per replica for the sliced Wasserstein selection
SCORE_PROJECTIONS = 128


def unit_owners(num_classes: int, replicas: int, size: int) -> np.ndarray:
    """owner[u] = u mod P for units u = k*C + c; rejects P > C*R."""
    units = num_classes * replicas
    if size > units:
        raise UsageError(
            f"pcwgan gives every rank at least one label: {num_classes} labels x {replicas} replica(s) "
            f"< {size} ranks; run on at most {units} ranks or pass --replicas R with R >= "
            f"{-(-size // num_classes)} (independent seeds per label, the best one is kept)")
    return np.arange(units) % size


def check_every_label_has_data(dataset, owner: np.ndarray, data: str) -> None:
    """UsageError, on every rank alike, naming a label without samples and the rank(s) that would
    train its generator on nothing."""
    C = dataset.spec.num_classes
    for c in dataset.empty_labels():
        ranks = sorted({int(r) for u, r in enumerate(owner) if u % C == c})
        raise UsageError(f"class {c} of {data} has no samples: pcwgan trains its generator on rank "
                         f"{', '.join(map(str, ranks))} from that class alone; add its images (or keep labels "
                         "below K with --labels K)")


@dataclass
class Unit:
    """One (label, replica) generator/critic pair with its own optimizers, noise and data view."""

    index: int
    label: int
    replica: int
    G: nn.Module
    D: nn.Module
    pair: AlternatingPair
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    noise: torch.Generator
    loader: Loader
    steps: int = 0


class RoundRobin(Loader):
    """Batches of n_critic*b samples from unit t mod n's label view at the t-th call."""

    def __init__(self, loaders: list[Loader]):
        self.loaders, self.t = loaders, 0

    def __next__(self):
        batch = next(self.loaders[self.t % len(self.loaders)])
        self.t += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "loaders": [l.state_dict() for l in self.loaders]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = state["t"]
        for l, s in zip(self.loaders, state["loaders"]):
            l.load_state_dict(s)


@ALGORITHMS.register("pcwgan")
class PCWGAN(Algorithm):
    summary = "Parallel W-CGAN: one WGAN per label spread over ranks, communication-free"
    lockstep = False
    defaults = WGAN_DEFAULTS
    options = frozenset({"n_critic", "replicas"})
    choices = WGAN_CHOICES
    comm_formula = "none (communication-free)"
    weak_scaling = WeakScaling("labels", "one generator per label: labels per rank stay constant")

    @classmethod
    def comm_time(cls, net: NetworkModel, m: int, work: Workload) -> float:
        return 0.0

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        self.num_classes = ctx.dataset.spec.num_classes
        self.replicas = self.cfg.algo.replicas
        self.owner = unit_owners(self.num_classes, self.replicas, self.world.size)
        check_every_label_has_data(ctx.dataset, self.owner, ctx.cfg.data.data)
        self.units = [self._build_unit(u) for u in np.flatnonzero(self.owner == self.world.rank)]
        self.kept = {c: c for c in range(self.num_classes)}   # label -> kept unit (replica 0 until finish)
        self.eval_noise = torch.Generator(device=self.world.device).manual_seed(
            rank_seed(self.cfg.run.seed, self.world.rank, "eval"))

    def _build_unit(self, u: int) -> Unit:
        cfg, dev, C = self.cfg, self.world.device, self.num_classes
        u = int(u)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(rank_seed(cfg.run.seed, u, "unit-init"))
            G, D = build_models(self.ctx.dataset.spec, cfg.model, conditional=False)
        G, D = G.to(dev), D.to(dev)
        loader = self.ctx.dataset.loader(cfg.data.batch_size * cfg.optim.n_critic, 0, 1,
                                         rank_seed(cfg.run.seed, u, "unit-data"), labels=[u % C])
        noise = torch.Generator(device=dev).manual_seed(rank_seed(cfg.run.seed, u, "unit-noise"))
        return Unit(u, u % C, u // C, G, D, AlternatingPair(G, D, LOSSES.get(cfg.model.loss), cfg.model.gp_weight),
                    build_optimizer(G.parameters(), cfg.optim), build_optimizer(D.parameters(), cfg.optim),
                    noise, loader)

    def make_loader(self) -> Loader:
        return RoundRobin([unit.loader for unit in self.units])

    def latent(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return latent(n, self.cfg.model.z_dim, generator, self.world.device)

    # -- training (local only) ------------------------------------------------------------------
    def step(self, batch: Batch, t: int) -> StepStats:
        unit = self.units[t % len(self.units)]
        self._begin_step()
        reals = batch[0].to(self.world.device, non_blocking=True).split(self.cfg.data.batch_size)
        d_loss, g_loss = alternating_step(unit.pair, [(real, ()) for real in reals], lambda n: (),
                                          lambda n: self.latent(n, unit.noise), unit.noise, unit.opt_D,
                                          unit.opt_G, self.timer, self.consumed, self.updated)
        unit.steps += 1
        return self._stats(d_loss, g_loss)

    # -- end of training: replica selection and /labels (collective, control channel) ---------
    def finish(self, recorder) -> None:
        C, R = self.num_classes, self.replicas
        steps = self._gather_units({u.index: float(u.steps) for u in self.units}).astype(np.int64)
        if R > 1:
            scores = self._gather_units({u.index: self._score(u) for u in self.units})
            self.kept = {c: int(np.argmin(scores[:, c])) * C + c for c in range(C)}
            recorder.write_array("labels/replica_steps", steps, doc="steps of unit (replica k, label c)")
            recorder.write_array("labels/replica_score", scores, doc="sliced Wasserstein distance to the "
                                 "label's real data (lower is better); the best replica is kept")
        kept = np.array([self.kept[c] for c in range(C)])
        recorder.write_array("labels/owner", self.owner[kept], doc="rank holding label c's generator")
        recorder.write_array("labels/steps", steps.reshape(-1)[kept], doc="training steps of label c's generator")
        recorder.write_array("labels/g_updates", steps.reshape(-1)[kept], doc="generator updates of label c's generator")
        recorder.write_array("labels/d_updates", self.cfg.optim.n_critic * steps.reshape(-1)[kept],
                             doc="critic updates of label c's critic")
        recorder.write_array("labels/replica", kept // C, doc="replica kept for label c")

    def _gather_units(self, local: dict[int, float]) -> np.ndarray:
        """(R, C) array of a per-unit value, assembled from every rank's units."""
        values = np.full(self.num_classes * self.replicas, np.nan)
        for part in self.comm.control.allgather(local):
            for u, v in part.items():
                values[u] = v
        return values.reshape(self.replicas, self.num_classes)

    @torch.no_grad()
    def _score(self, unit: Unit) -> float:
        real, _ = next(self.ctx.dataset.loader(SCORE_SAMPLES, 0, 1, self.cfg.run.seed, labels=[unit.label]))
        fake = unit.G(self.latent(SCORE_SAMPLES, self.eval_noise)).cpu()
        return sliced_wasserstein(real, fake, SCORE_PROJECTIONS, self.cfg.run.seed)

    # -- sampling as one conditional model ------------------------------------------------------
    def _local(self, c: int) -> Unit | None:
        """This rank's kept generator for label c, if it holds it."""
        return next((u for u in self.units if u.index == self.kept[c]), None)

    @torch.no_grad()
    def generate(self, labels: torch.Tensor) -> torch.Tensor:
        """G_c(z) for every entry c of ``labels``, all of them labels this rank holds (local)."""
        labels = labels.cpu()
        out = torch.zeros(len(labels), *self.ctx.dataset.spec.shape)
        for c in labels.unique().tolist():
            where = labels == c
            out[where] = self._local(c).G(self.latent(int(where.sum()), self.eval_noise)).cpu()
        return out

    def samplers(self) -> dict[str, Sampler]:
        """Each rank draws the evaluation's samples of the labels it holds (module docstring)."""
        own = {c for c in range(self.num_classes) if self._local(c) is not None}
        return {"": LabelSampler(self.generate, label_proportions(self.ctx.dataset), own)}

    def final_models(self) -> dict[str, Generators]:
        """Every rank gives the kept generators of the labels it holds."""
        mine = {c: unit.G for c in range(self.num_classes) if (unit := self._local(c)) is not None}
        return {"": Generators.per_label(mine)} if mine else {}

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"eval_noise": self.eval_noise.get_state(), "kept": dict(self.kept), "units": {
            u.index: {"G": u.G.state_dict(), "D": u.D.state_dict(), "opt_G": u.opt_G.state_dict(),
                      "opt_D": u.opt_D.state_dict(), "noise": u.noise.get_state(), "steps": u.steps}
            for u in self.units}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.eval_noise.set_state(state["eval_noise"])
        self.kept = dict(state["kept"])
        for u in self.units:
            s = state["units"][u.index]
            u.G.load_state_dict(s["G"])
            u.D.load_state_dict(s["D"])
            u.opt_G.load_state_dict(s["opt_G"])
            u.opt_D.load_state_dict(s["opt_D"])
            u.noise.set_state(s["noise"])
            u.steps = s["steps"]


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int, seed: int) -> float:
    """Mean over random unit directions w of W1(<w, a>, <w, b>) for equally many samples."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    g = torch.Generator().manual_seed(rank_seed(seed, 0, "sliced-wasserstein"))
    w = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    w /= w.norm(dim=0, keepdim=True)
    pa, pb = (a @ w).sort(dim=0).values, (b @ w).sort(dim=0).values
    return float((pa - pb).abs().mean())
