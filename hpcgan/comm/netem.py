"""Network emulation by accounting: the modelled time of each collective, never slept.

With latency alpha [s] per message, bandwidth B [bytes/s], M ranks and n the bytes one rank hands
to the transport (ALGORITHMS.md section 5):
    allreduce (ring)   2 (M - 1) (alpha + n / (M B))
    allgather (ring)   (M - 1) (alpha + n / B)
    broadcast (tree)   ceil(log2 M) (alpha + n / B)
    neighbour exchange alpha + n / B per gossip round (neighbours served in parallel; 0 without any)
The communicator adds this to ``t_net_emulated``, recorded next to (never inside) the measured
t_comm, so a run on a fast local network can be re-read as if on a slower one:
t_step(emulated) = t_step(measured) - t_comm + t_net_emulated. A 1-rank job sends nothing: 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class NetworkModel:
    latency: float = 0.0
    bandwidth: float = 0.0  # 0 = infinite

    @property
    def active(self) -> bool:
        return self.latency > 0 or self.bandwidth > 0

    def _hop(self, nbytes: float) -> float:
        return self.latency + (nbytes / self.bandwidth if self.bandwidth > 0 else 0.0)

    def allreduce(self, nbytes: int, size: int) -> float:
        return 2 * (size - 1) * self._hop(nbytes / size) if size > 1 else 0.0

    def allgather(self, nbytes: int, size: int) -> float:
        return (size - 1) * self._hop(nbytes) if size > 1 else 0.0

    def broadcast(self, nbytes: int, size: int) -> float:
        return math.ceil(math.log2(size)) * self._hop(nbytes) if size > 1 else 0.0

    def neighbor(self, nbytes: int, degree: int) -> float:
        return self._hop(nbytes) if degree > 0 else 0.0
