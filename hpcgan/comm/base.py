"""Communicator: moves tensors between ranks and counts what it hands to the transport.

Communicators never compress and never own model state. ``bytes_sent`` counts the bytes of the
payload this rank hands to the transport per call (an allreduce of d fp32 values counts 4d; an
allgather counts this rank's payload once), which is what compression changes; the transport's
own algorithm (ring, tree) multiplies it by a factor that does not depend on the compressor.
``calls`` counts collective calls, so a test can prove an algorithm communicated nothing.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ..errors import UsageError
from ..registry import Registry

BACKENDS: Registry[type["Communicator"]] = Registry("backend")


class Communicator(ABC):
    name: str = "abstract"

    def __init__(self, rank: int, size: int):
        self.rank, self.size = rank, size
        self.bytes_sent = 0
        self.calls = 0
        self.t_net_emulated = 0.0

    def _count(self, nbytes: int) -> None:
        """Record one call handing ``nbytes`` to the transport (nothing leaves a 1-rank job)."""
        if self.size > 1:
            self.bytes_sent += int(nbytes)
        self.calls += 1

    @abstractmethod
    def allreduce_(self, t: torch.Tensor, average: bool = True) -> torch.Tensor:
        """In-place sum (or mean) of ``t`` over all ranks; returns ``t``."""

    @abstractmethod
    def allgather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's 1-D tensor, in rank order (lengths may differ between ranks)."""

    @abstractmethod
    def broadcast_(self, t: torch.Tensor, root: int = 0) -> torch.Tensor:
        """In-place copy of ``t`` from ``root`` to every rank; returns ``t``."""

    @abstractmethod
    def barrier(self) -> None:
        """Wait for every rank."""

    def neighbor_mix(self, x: torch.Tensor, plan) -> torch.Tensor:
        """One gossip round (DPOSG): self_weight x + sum_k weights[k] x^{sources[k]} for a
        :class:`~hpcgan.topology.GossipPlan`, sending x to every rank in ``plan.destinations``;
        counts the bytes of x times the out-degree. Collective over all ranks of the communicator."""
        raise UsageError(f"gossip (neighbor_mix) is not supported on backend '{self.name}'; use --backend mpi")

    def aggregate(self, payload: list[torch.Tensor], ctx, compressor) -> torch.Tensor:
        """(1/M) sum_m decompress(payload_m): allreduce when summable, else allgather + decompress."""
        if compressor.summable:
            summed = [self.allreduce_(t.clone(), average=False) for t in payload]
            return compressor.decompress(summed, ctx).div_(self.size)
        gathered = [self.allgather(t) for t in payload]
        parts = [compressor.decompress([g[r].view_as(t) for g, t in zip(gathered, payload)], ctx)
                 for r in range(self.size)]
        return torch.stack(parts).mean(dim=0)
