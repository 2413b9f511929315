"""dposg: decentralized parallel optimistic stochastic gradient (docs/ALGORITHMS.md section 2).

Every rank i keeps its own x^i = (theta, phi) (one flat vector, G and D together) and its previous
direction d^i_prev (zero at start). Per iteration, with mixing matrix W (``--topology``) and t
gossip rounds (``--gossip-rounds``):
    1. x_hat^i = sum_j (W^t)_ij x^j          t rounds, each one neighbour exchange of the flat vector
    2. z^i     = x_hat^i - eta d^i_prev      optimistic extrapolation, no new gradient
    3. g^i     = F(z^i; xi^i)                one fresh simultaneous gradient of G and D, at z^i
    4. x^i     = x_hat^i - eta d^i;  d^i_prev = d^i
with d^i = g^i (DPOSG, ``--optimizer omd``) or, for DPOAdam (``--optimizer oadam``), this rank's
own Adam direction d^i = m_hat/(sqrt(v_hat) + eps) after updating m, v with g^i (moments are
local, never gossiped). The step runs no global collective: only the neighbour exchange.

Outside the timed step, over the uncounted control channel: the consensus distance
(1/M) sum_i ||x^i - x_bar||^2 every ``--consensus-every`` steps (one allreduce of [x^i, ||x^i||^2])
into /consensus/distance, and evaluation of the averaged model x_bar (the run's model: plain metric
names) and of rank 0's model (suffix ``rank0``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..comm.topology import build_topology
from ..gan.optim import Direction
from ..metrics import SampleFn
from ..netmodel import NetworkModel, Workload
from ..results.model import Generators
from ..results.schema import StepStats
from .base import ALGORITHMS, Batch, GanAlgorithm, TrainContext

if TYPE_CHECKING:
    from ..results.recorder import Recorder

RULES = {"omd": "DPOSG", "oadam": "DPOAdam"}


@ALGORITHMS.register("dposg")
class DPOSG(GanAlgorithm):
    summary = "decentralized parallel optimistic SGD / Adam: gossip with graph neighbours, no global collective"
    defaults = {"optimizer": "oadam"}
    options = frozenset({"topology", "gossip_rounds", "consensus_every"})
    choices = {**GanAlgorithm.choices, "optimizer": tuple(RULES)}
    comm_formula = "t gossip rounds, neighbours in parallel: t(a + 4d/B)"

    @classmethod
    def comm_time(cls, net: NetworkModel, m: int, work: Workload) -> float:
        return work.setting("algo", "gossip_rounds", 1) * net.neighbor(4 * work.d, m - 1)

    def __init__(self, ctx: TrainContext):
        super().__init__(ctx)
        self.topology = build_topology(self.cfg.algo.topology, self.comm.size)
        self.plan = self.topology.plan(self.comm.rank)
        self.rounds = self.cfg.algo.gossip_rounds
        self.comm.neighbor_mix(self.flat.params, self.plan)  # backend check; builds the graph communicator
        self.d_prev = torch.zeros_like(self.flat.params)
        self.direction = Direction(self.cfg.optim, self.flat.params)
        self._last_step = self._last_consensus = -1

    # -- the step ------------------------------------------------------------------------------
    def gossip(self, x: torch.Tensor) -> torch.Tensor:
        """x_hat = (W^t x)_i: t neighbour exchanges."""
        for _ in range(self.rounds):
            x = self.comm.neighbor_mix(x, self.plan)
        return x

    def step(self, batch: Batch, t: int) -> StepStats:
        eta, x = self.cfg.optim.lr, self.flat.params
        self._begin_step()
        with self.timer("comm"):
            x_hat = self.gossip(x)
        with self.timer("update"):
            torch.add(x_hat, self.d_prev, alpha=-eta, out=x)            # params <- z
        with self.timer("compute"):
            d_loss, g_loss = self.compute_gradients(batch)             # grads <- F(z; xi)
        with self.timer("update"):
            self.d_prev = self.direction(self.flat.grads)
            torch.add(x_hat, self.d_prev, alpha=-eta, out=x)            # params <- x_hat - eta d
        return self._stats(d_loss, g_loss)

    # -- outside the timed step ----------------------------------------------------------------
    def consensus_distance(self) -> float:
        """(1/M) sum_i ||x^i - x_bar||^2 = (sum_i ||x^i||^2 - M ||x_bar||^2) / M, one allreduce (float64).

        Arithmetic in torch, not numpy: numpy's BLAS runs its own thread pool, whose threads keep
        spinning after a call and took the cores from the ranks (4 ms/step more at 2 ranks)."""
        x = self.flat.params.detach().to(torch.float64)
        buf = torch.cat([x, (x @ x).reshape(1)])
        self.comm.control.allreduce_(buf)
        M = self.world.size
        mean = buf[:-1] / M
        return max(0.0, float(buf[-1] - M * (mean @ mean)) / M)

    def after_step(self, recorder: "Recorder", step: int) -> None:
        if (step + 1) % self.cfg.algo.consensus_every == 0:
            self._record_consensus(recorder, step)
        self._last_step = step

    def finish(self, recorder: "Recorder") -> None:
        if self._last_step >= 0 and self._last_consensus != self._last_step:
            self._record_consensus(recorder, self._last_step)

    def _record_consensus(self, recorder: "Recorder", step: int) -> None:
        recorder.record_series("consensus", step, {"distance": self.consensus_distance()})
        self._last_consensus = step

    def averaged_params(self) -> torch.Tensor:
        return self.comm.control.allreduce_(self.flat.params.detach().clone()).div_(self.world.size)

    def rank0_params(self) -> torch.Tensor:
        return self.comm.control.broadcast_(self.flat.params.detach().clone(), root=0)

    def _sampler_with(self, params_fn) -> SampleFn:
        """A sampler that evaluates G at params_fn() (collective), keeping this rank's x^i."""
        def sample(n: int):
            other, own = params_fn(), self.flat.params.clone()
            self.flat.params.copy_(other)
            try:
                return self.sample(n)
            finally:
                self.flat.params.copy_(own)
        return sample

    def samplers(self) -> dict[str, SampleFn]:
        return {"": self._sampler_with(self.averaged_params), "rank0": self._sampler_with(self.rank0_params)}

    def final_models(self) -> dict[str, Generators]:
        """Rank 0 gives the averaged model and its own (the average is collective)."""
        mean, own = self.averaged_params(), self.flat.params.clone()
        self.flat.params.copy_(mean)
        averaged = Generators.of(self.G, False)
        self.flat.params.copy_(own)
        return {"": averaged, "rank0": Generators.of(self.G, False)} if self.world.rank == 0 else {}

    # -- bookkeeping ---------------------------------------------------------------------------
    def attrs(self) -> dict[str, Any]:
        return {"compressor": "none", "topology": self.topology.name, "spectral_gap": self.topology.spectral_gap,
                "mixing_rho": self.topology.rho, "gossip_rounds": self.rounds,
                "update_rule": RULES[self.cfg.optim.optimizer]}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "d_prev": self.d_prev.clone(), "direction": self.direction.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.d_prev = state["d_prev"].clone()
        self.direction.load_state_dict(state["direction"])
