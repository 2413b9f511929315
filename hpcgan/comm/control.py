"""The control channel: small, uncounted collectives over the job's MPI communicator.

Training data moves through a :class:`~hpcgan.comm.base.Communicator`, which counts what it hands
to the transport. Everything else that crosses ranks -- size checks, flags, the DPOSG consensus
distance, the averaged model for evaluation, per-label bookkeeping, the sums of the quality
metrics -- goes through this channel, so no algorithm or metric touches mpi4py and none of it
shows up in ``bytes_sent``. Tensors on any device are staged through host memory (a fresh copy per
call: control messages are rare and small, so they keep no buffers); host tensors are used in
place. Python objects are pickled by mpi4py.
"""
from __future__ import annotations

from typing import Any

import torch
from mpi4py import MPI


class ControlChannel:
    def __init__(self, comm: MPI.Comm):
        self.comm = comm
        self.rank, self.size = comm.rank, comm.size

    # -- tensors (host-staged; results land back on the tensor's device) -------------------------
    def allreduce_(self, t: torch.Tensor) -> torch.Tensor:
        """In-place elementwise sum of ``t`` over all ranks; returns ``t``."""
        host = _host(t)
        self.comm.Allreduce(MPI.IN_PLACE, host.numpy(), op=MPI.SUM)
        return _back(t, host)

    def broadcast_(self, t: torch.Tensor, root: int = 0) -> torch.Tensor:
        """In-place copy of ``t`` from ``root``; returns ``t``."""
        host = _host(t)
        self.comm.Bcast(host.reshape(-1).view(torch.uint8).numpy(), root=root)  # bytes: any dtype
        return _back(t, host)

    # -- Python objects ------------------------------------------------------------------------
    def allgather(self, obj: Any) -> list[Any]:
        return self.comm.allgather(obj)

    def allreduce(self, value: Any) -> Any:
        """Sum of a number over all ranks."""
        return self.comm.allreduce(value)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root)

    def exscan(self, value: int) -> int:
        """Sum of ``value`` over the ranks before this one (0 on rank 0)."""
        return self.comm.exscan(value) or 0

    def barrier(self) -> None:
        self.comm.Barrier()


def _host(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if it is a contiguous host tensor, else a contiguous host copy."""
    return t.detach().cpu().contiguous()


def _back(t: torch.Tensor, host: torch.Tensor) -> torch.Tensor:
    if host.data_ptr() != t.data_ptr() or t.device.type != "cpu":
        t.copy_(host.view(t.shape))
    return t
