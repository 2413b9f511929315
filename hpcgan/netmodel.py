"""The network model: alpha-beta time of each collective, used twice with the same formulas.

With latency alpha [s] per message, bandwidth B [bytes/s], M ranks and n the bytes one rank hands
to the transport (docs/ALGORITHMS.md section 5):
    allreduce (ring)   2 (M - 1) (alpha + n / (M B))
    allgather (ring)   (M - 1) (alpha + n / B)
    broadcast (tree)   ceil(log2 M) (alpha + n / B)
    neighbour exchange alpha + n / B per gossip round (neighbours served in parallel; 0 without any)
A 1-rank job sends nothing: 0. B = 0 means infinite bandwidth.

* Emulation (``--net-latency``/``--net-bandwidth``): the communicator adds each collective's time
  to ``t_net_emulated``, recorded next to (never inside) the measured t_comm, so a run on a fast
  local network can be re-read as if on a slower one: t_step(emulated) = wall - t_comm + t_net_emulated.
  Nothing is slept.
* The cost model (:mod:`hpcgan.analysis.costmodel`): alpha and B fitted from ``hpcgan bench comm``,
  or chosen for a projection; each algorithm states its step's communication in these terms
  (``Algorithm.comm_time``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class NetworkModel:
    latency: float = 0.0
    bandwidth: float = 0.0          # bytes/s; 0 = infinite
    source: str = ""                # where the numbers come from (fits and projections)
    rel_error: float = math.nan     # median |relative residual| of a fit

    @property
    def active(self) -> bool:
        return self.latency > 0 or self.bandwidth > 0

    def _hop(self, nbytes: float) -> float:
        return self.latency + (nbytes / self.bandwidth if self.bandwidth > 0 else 0.0)

    def allreduce(self, nbytes: float, size: int) -> float:
        return 2 * (size - 1) * self._hop(nbytes / size) if size > 1 else 0.0

    def allgather(self, nbytes: float, size: int) -> float:
        return (size - 1) * self._hop(nbytes) if size > 1 else 0.0

    def broadcast(self, nbytes: float, size: int) -> float:
        return math.ceil(math.log2(size)) * self._hop(nbytes) if size > 1 else 0.0

    def neighbor(self, nbytes: float, degree: int) -> float:
        return self._hop(nbytes) if degree > 0 else 0.0

    def describe(self) -> str:
        fit = f", median fit error {100 * self.rel_error:.0f}%" if math.isfinite(self.rel_error) else ""
        bw = f"{self.bandwidth / 1e9:.3g} GB/s" if self.bandwidth > 0 else "infinite"
        return f"alpha = {1e6 * self.latency:.2f} us, B = {bw} ({self.source or 'given'}{fit})"


@dataclass(frozen=True)
class Workload:
    """What one training step of a run moves, for an algorithm's communication-time formula:
    parameters per network (``{"G": dG, "D": dD}``), the measured payload one rank hands to the
    transport per step [B], and the run's configuration (gossip rounds, n_critic, ...)."""

    params: dict[str, int]
    payload: float
    config: dict

    @property
    def d(self) -> int:
        return sum(self.params.values())

    def setting(self, section: str, name: str, default):
        return self.config.get(section, {}).get(name, default)
