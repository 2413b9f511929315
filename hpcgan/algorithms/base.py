"""Algorithm: owns one training step; models stay plain modules, optimizers do arithmetic only.

:class:`GanAlgorithm` holds what the centralized and decentralized algorithms share: a (G, D)
pair initialised identically on every rank, both flattened into one :class:`FlatParams`, a per-rank
noise stream, and :meth:`GanAlgorithm.compute_gradients`, which writes the simultaneous gradient
F(x_t; xi_t) = [grad_theta L_G ; grad_phi L_D] of the local batch into ``flat.grads``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..bench import PhaseTimer, StepStats
from ..comm import Communicator
from ..config import RunConfig
from ..data import Dataset, Loader
from ..flat import FlatParams
from ..losses import LOSSES, simultaneous_gradients
from ..metrics import SampleFn
from ..models import build_models
from ..registry import Registry
from ..world import World, rank_seed

if TYPE_CHECKING:
    from ..recorder import Recorder

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TrainContext:
    cfg: RunConfig
    world: World
    comm: Communicator
    dataset: Dataset


class Algorithm(ABC):
    #: True when every rank takes every step together (collectives inside the step). pcwgan is
    #: False: its ranks run independently and the runner must not synchronise them.
    lockstep: ClassVar[bool] = True

    def __init__(self, ctx: TrainContext):
        self.ctx, self.cfg, self.world, self.comm = ctx, ctx.cfg, ctx.world, ctx.comm
        self.timer = PhaseTimer(ctx.world.device)
        self._bytes0 = self._net0 = 0.0

    def make_loader(self) -> Loader:
        c = self.cfg
        return self.ctx.dataset.loader(c.data.batch_size, self.world.rank, self.world.size, c.run.seed)

    @abstractmethod
    def step(self, batch: Batch, t: int) -> StepStats:
        """One training iteration on this rank's batch; phases timed, bytes counted."""

    @abstractmethod
    def samplers(self) -> dict[str, SampleFn]:
        """Models to evaluate: {"": main model} plus e.g. {"rank0": ...} (suffixes of metric names)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def after_step(self, recorder: "Recorder", step: int) -> None:
        """Called on every rank after step ``step`` is recorded, outside the timed phases; may write
        series (e.g. /consensus) through ``recorder``. Collective calls here must be lockstep."""

    def finish(self, recorder: "Recorder") -> None:
        """Called on every rank once training ends, before the final evaluation (e.g. /labels)."""

    def attrs(self) -> dict[str, Any]:
        """Results-file attributes this algorithm determines."""
        return {"compressor": "none", "topology": "none", "spectral_gap": float("nan")}

    # -- accounting helpers -------------------------------------------------------------------
    def _begin_step(self) -> None:
        """Called first thing in :meth:`step`: the marks that :meth:`_stats` measures from."""
        self._bytes0, self._net0 = self.comm.bytes_sent, self.comm.t_net_emulated
        self.timer.begin()

    def _stats(self, d_loss: torch.Tensor, g_loss: torch.Tensor) -> StepStats:
        """Phase times, CPU time, bytes and emulated delay since :meth:`_begin_step`, with the losses."""
        return StepStats(**self.timer.take(), bytes_sent=int(self.comm.bytes_sent - self._bytes0),
                         t_net_emulated=self.comm.t_net_emulated - self._net0,
                         d_loss=float(d_loss), g_loss=float(g_loss))


class GanAlgorithm(Algorithm):
    """One (G, D) pair per rank, flattened together as ``self.flat`` (ranges "G" and "D")."""

    conditional: ClassVar[bool] = False

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        cfg, dev = self.cfg, self.world.device
        with torch.random.fork_rng(devices=[]):  # same initial x_0 on every rank
            torch.manual_seed(rank_seed(cfg.run.seed, 0, "init"))
            G, D = build_models(ctx.dataset.spec, cfg.model, self.conditional)
        self.G, self.D = G.to(dev), D.to(dev)
        self.flat = FlatParams({"G": self.G, "D": self.D})
        self.loss = LOSSES.get(cfg.model.loss)
        self.noise = torch.Generator(device=dev).manual_seed(rank_seed(cfg.run.seed, self.world.rank, "noise"))
        self.eval_noise = torch.Generator(device=dev).manual_seed(rank_seed(cfg.run.seed, self.world.rank, "eval"))

    def latent(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.cfg.model.z_dim, generator=generator, device=self.world.device)

    def compute_gradients(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """flat.grads <- F(x; xi) on the local batch; returns (L_D, L_G)."""
        x, y = (t.to(self.world.device, non_blocking=True) for t in batch)
        labels = y if self.conditional else None
        g_G, g_D, d_loss, g_loss = simultaneous_gradients(
            self.G, self.D, self.loss, x, self.latent(x.shape[0], self.noise), labels,
            self.cfg.model.gp_weight, self.noise)
        self.flat.set_grads("G", g_G)
        self.flat.set_grads("D", g_D)
        return d_loss, g_loss

    @torch.no_grad()
    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.G.eval()
        try:
            return self.G(self.latent(n, self.eval_noise)).cpu(), None
        finally:
            self.G.train()

    def samplers(self) -> dict[str, SampleFn]:
        return {"": self.sample}

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.flat.params.clone(), "noise": self.noise.get_state(),
                "eval_noise": self.eval_noise.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.flat.params.copy_(state["params"])
        self.noise.set_state(state["noise"])
        self.eval_noise.set_state(state["eval_noise"])


ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm")
