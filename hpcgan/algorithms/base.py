"""Algorithm: owns one training step *and* its facts; models stay plain modules, optimizers do
arithmetic only, the communicator moves the bytes.

What an algorithm class declares, so that nothing else in hpcgan names algorithms:

* ``defaults``, ``options``, ``choices``: its defaults for config fields, the algorithm-specific
  fields it uses, and the values of shared fields it accepts. :func:`resolve_config` applies them
  when the command line is parsed, before any MPI or model set-up: the algorithm's defaults, then
  the user's flags; a flag the algorithm does not use is a UsageError naming the algorithm.
* ``comm_formula`` and :meth:`Algorithm.comm_time`: its communication time per step in the
  network model of docs/ALGORITHMS.md section 5 (the cost model loops over the registry).
* ``weak_scaling``: what stays constant per rank in a weak-scaling sweep (default: the batch).
* :meth:`Algorithm.samplers`: the models it evaluates; ``""`` is the run's model (its metrics carry
  the plain names), other keys are suffixes (e.g. ``rank0``).
* :meth:`Algorithm.final_models`: the same models as generator weights, each rank its part, written
  at the end of every run for ``hpcgan eval`` and grids (:mod:`hpcgan.results.model`).
* ``lockstep``: whether its ranks take every step together (the lockstep driver) or each on its
  own clock (:mod:`hpcgan.train`).

:class:`GanAlgorithm` holds what the centralized and decentralized algorithms share: a (G, D)
pair initialised identically on every rank, both flattened into one :class:`FlatParams`, a per-rank
noise stream, and :meth:`GanAlgorithm.compute_gradients`, which writes the simultaneous gradient
F(x_t; xi_t) = [grad_theta L_G ; grad_phi L_D] of the local batch into ``flat.grads``, and
:meth:`GanAlgorithm.gradient_exchange`, the bucketed exchange of that buffer (``--bucket-mb``) that
sync and DQGAN start from gradient hooks during backward (:mod:`hpcgan.exchange`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch

from ..comm import Communicator
from ..compress import Compressor
from ..config import SECTION_OF, RunConfig, flag, flag_fields
from ..data import Dataset, Loader
from ..errors import UsageError
from ..exchange import MIB, Bucket, BucketedExchange, Exchange, plan_buckets
from ..gan.flat import FlatParams
from ..gan.losses import BACKWARD_ORDERS, LOSSES, simultaneous_gradients
from ..gan.models import build_models, latent
from ..metrics import SampleFn, Sampler
from ..netmodel import NetworkModel, Workload
from ..registry import Registry
from ..results.model import Generators
from ..results.schema import StepStats
from ..results.timer import PhaseTimer
from ..world import World, rank_seed

if TYPE_CHECKING:
    from ..results.recorder import Recorder

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TrainContext:
    cfg: RunConfig
    world: World
    comm: Communicator
    dataset: Dataset


@dataclass(frozen=True)
class WeakScaling:
    """Weak scaling of an algorithm whose per-rank work is not the batch: config field ``field``
    = N x its 1-rank value at N ranks (the batch per rank then stays as given)."""

    field: str
    why: str


class Algorithm(ABC):
    #: True when every rank takes every step together (collectives inside the step). pcwgan is
    #: False: its ranks run independently and the runner must not synchronise them.
    lockstep: ClassVar[bool] = True
    #: one line for ``--help``: what the algorithm is
    summary: ClassVar[str] = ""
    #: this algorithm's defaults for config fields, laid under the user's flags
    defaults: ClassVar[dict[str, Any]] = {}
    #: the algorithm-specific config fields it uses (any registered algorithm's ``options``;
    #: ``compressor_options`` = every compressor's options); every other field is shared by all
    options: ClassVar[frozenset[str]] = frozenset()
    #: values it accepts for shared fields that it restricts, e.g. {"optimizer": ("omd", "oadam")}
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: its communication per step in docs/ALGORITHMS.md section 5 terms (see :meth:`comm_time`)
    comm_formula: ClassVar[str] = "unknown"
    #: what stays constant per rank in weak scaling; None = the batch
    weak_scaling: ClassVar[WeakScaling | None] = None

    @classmethod
    def comm_time(cls, net: NetworkModel, m: int, work: Workload) -> float:
        """Modelled communication seconds of one step at ``m`` ranks (NaN: no model)."""
        return float("nan")

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """UsageError if settings that are each valid do not go together for this algorithm."""

    def __init__(self, ctx: TrainContext):
        self.ctx, self.cfg, self.world, self.comm = ctx, ctx.cfg, ctx.world, ctx.comm
        self.timer = PhaseTimer(ctx.world.device)
        self._bytes0 = self._net0 = 0.0
        self._real = self._fake = self._g_updates = self._d_updates = 0

    def make_loader(self) -> Loader:
        c = self.cfg
        return self.ctx.dataset.loader(c.data.batch_size, self.world.rank, self.world.size, c.run.seed)

    @abstractmethod
    def step(self, batch: Batch, t: int) -> StepStats:
        """One training iteration on this rank's batch; phases timed, bytes counted."""

    @abstractmethod
    def samplers(self) -> dict[str, Sampler | SampleFn]:
        """Models to evaluate: {"": the run's model} plus e.g. {"rank0": ...} (suffixes of metric names)."""

    @abstractmethod
    def final_models(self) -> dict[str, Generators]:
        """Collective: this rank's part of the models of :meth:`samplers`, as generator weights
        (``{}`` when it holds none); :func:`hpcgan.results.model.merge` joins the parts."""

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
        self._real = self._fake = self._g_updates = self._d_updates = 0
        self.timer.begin()

    def consumed(self, real: int, fake: int) -> None:
        """Count what the step uses: ``real`` data samples and ``fake`` generator samples (throughput)."""
        self._real += int(real)
        self._fake += int(fake)

    def updated(self, generator: int, critic: int) -> None:
        """Count the updates the step applies to the model(s) this rank trains: ``generator``
        generator and ``critic`` critic/discriminator updates (/steps/g_updates, d_updates)."""
        self._g_updates += int(generator)
        self._d_updates += int(critic)

    def _stats(self, d_loss: torch.Tensor, g_loss: torch.Tensor) -> StepStats:
        """Phase times, CPU time, bytes, emulated delay, samples consumed and updates applied since
        :meth:`_begin_step`, with the losses."""
        return StepStats(**self.timer.take(), bytes_sent=int(self.comm.bytes_sent - self._bytes0),
                         t_net_emulated=self.comm.t_net_emulated - self._net0,
                         real_samples=self._real, fake_samples=self._fake,
                         g_updates=self._g_updates, d_updates=self._d_updates,
                         d_loss=float(d_loss), g_loss=float(g_loss))


class GanAlgorithm(Algorithm):
    """One (G, D) pair per rank, flattened together as ``self.flat`` (ranges "G" and "D"), trained
    by simultaneous gradients."""

    conditional: ClassVar[bool] = False
    choices = {"loss": ("ns", "wgan-gp")}

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
        self.exchange: BucketedExchange | None = None

    def gradient_exchange(self, compressor: Compressor, error_feedback: bool,
                          message: Callable[[Bucket, torch.Tensor], torch.Tensor], out: torch.Tensor,
                          groups: Callable[[list[int]], list[int]] | None = None) -> BucketedExchange:
        """The exchange of ``flat.grads`` in ``--bucket-mb`` buckets, started from gradient hooks
        as :meth:`compute_gradients` produces them; each bucket's ``message`` is averaged into its
        slice of ``out`` (see :class:`~hpcgan.exchange.BucketedExchange`)."""
        buckets = plan_buckets(self.flat, BACKWARD_ORDERS[self.cfg.comm.backward_order],
                               int(self.cfg.comm.bucket_mb * MIB), groups)
        exchange = Exchange(self.comm, compressor, error_feedback, self.timer)
        self.exchange = BucketedExchange(self.flat, exchange, buckets, message, out, self.timer)
        return self.exchange

    def latent(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return latent(n, self.cfg.model.z_dim, generator, self.world.device)

    def compute_gradients(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """flat.grads <- F(x; xi) on the local batch; returns (L_D, L_G). With a bucketed exchange,
        its hooks write the gradients and start the buckets' exchanges as backward produces them.
        Every algorithm that calls this applies the gradient once: one update of G and one of D."""
        x, y = (t.to(self.world.device, non_blocking=True) for t in batch)
        labels = y if self.conditional else None
        self.consumed(x.shape[0], x.shape[0])  # one fake per real: D sees both, G's loss reuses the fakes
        self.updated(1, 1)
        hooked = self.exchange is not None and self.exchange.hooked
        if self.exchange is not None:
            self.exchange.arm()
        g_G, g_D, d_loss, g_loss = simultaneous_gradients(
            self.G, self.D, self.loss, x, self.latent(x.shape[0], self.noise), labels,
            self.cfg.model.gp_weight, self.noise, self.cfg.comm.backward_order)
        if not hooked:
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

    def final_models(self) -> dict[str, Generators]:
        """Every rank holds the same model: rank 0 gives it."""
        return {"": Generators.of(self.G, self.conditional)} if self.world.rank == 0 else {}

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.flat.params.clone(), "noise": self.noise.get_state(),
                "eval_noise": self.eval_noise.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.flat.params.copy_(state["params"])
        self.noise.set_state(state["noise"])
        self.eval_noise.set_state(state["eval_noise"])


ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm")


def specific_fields() -> frozenset[str]:
    """Config fields that only some registered algorithms use (the union of their ``options``)."""
    return frozenset().union(*(flag_fields(ALGORITHMS.get(name).options) for name in ALGORITHMS))


def fields_of(algo: type[Algorithm]) -> set[str]:
    """Every config field ``algo`` uses: the shared ones and its own options."""
    return (flag_fields(SECTION_OF) - specific_fields()) | flag_fields(algo.options)


def resolve_config(given: dict[str, Any]) -> RunConfig:
    """The configuration that runs: ``given`` (the flags the user gave, ``{field: value}``) over the
    chosen algorithm's ``defaults`` over the declared defaults. A flag the algorithm does not use,
    or a value it does not accept, is a UsageError; every field is range-checked."""
    name = given.get("algo", RunConfig().algo.algo)
    algo = ALGORITHMS.get(name)
    unused = sorted(set(given) - fields_of(algo))
    if unused:
        users = {f: [a for a in ALGORITHMS if f in flag_fields(ALGORITHMS.get(a).options)] for f in unused}
        raise UsageError(f"--algo {name} does not use " + ", ".join(
            f"{flag(f)} (used by {', '.join(users[f])})" for f in unused))
    cfg = RunConfig.from_values({**algo.defaults, **given})
    for field, allowed in algo.choices.items():
        if cfg.value(field) not in allowed:
            raise UsageError(f"--algo {name} takes {flag(field)} {' or '.join(allowed)}; got '{cfg.value(field)}'")
    algo.check_config(cfg)
    return cfg


def defaults_help() -> dict[str, str]:
    """Per field, the algorithms whose defaults differ from the declared one (for ``--help``)."""
    out: dict[str, list[str]] = {}
    for name in ALGORITHMS:
        for field, value in ALGORITHMS.get(name).defaults.items():
            out.setdefault(field, []).append(f"{name}: {value}")
    return {field: ", ".join(items) for field, items in out.items()}
