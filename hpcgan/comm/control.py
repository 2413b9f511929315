"""The control channel: small, uncounted collectives over the job's MPI communicator -- the one way
ranks talk outside the training data.

Training data moves through a :class:`~hpcgan.comm.base.Communicator`, which counts what it hands
to the transport. Everything else that crosses ranks -- the trainer's stop decisions, the
recorder's rows, checkpoint agreement, errors seen by some ranks, size checks, the DPOSG consensus
distance, the averaged model for evaluation, per-label bookkeeping, the sums of the quality
metrics -- goes through this channel, so nothing outside :mod:`hpcgan.comm` touches mpi4py and
none of it shows up in ``bytes_sent``. Its method names are mpi4py's lower-case ones (``rank``,
``size``, ``allgather``, ``gather``, ``bcast``, ``allreduce``, ``barrier``), with reductions named
by string (``op="sum" | "max" | "min"``). Tensors (and numpy arrays) on any device are staged
through host memory (a fresh copy per call: control messages are rare and small, so they keep no
buffers); host tensors are used in place. Python objects are pickled by mpi4py.

:func:`control_of` turns an mpi4py communicator into a channel (and leaves a channel as it is), so
entry points and tests may hand either to the functions that take one.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from mpi4py import MPI

OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}


class ControlChannel:
    def __init__(self, comm: MPI.Comm):
        self.mpi = comm  # for hpcgan.comm only: the communicators are built over it
        self.rank, self.size = comm.rank, comm.size

    @classmethod
    def world(cls) -> "ControlChannel":
        """Every rank of the job."""
        return cls(MPI.COMM_WORLD)

    @classmethod
    def alone(cls) -> "ControlChannel":
        """This rank only (ranks that checkpoint or record on their own clock)."""
        return cls(MPI.COMM_SELF)

    # -- tensors and arrays (host-staged; results land back where they came from) ---------------
    def allreduce_(self, t: torch.Tensor | np.ndarray, op: str = "sum") -> torch.Tensor | np.ndarray:
        """In-place elementwise reduction of ``t`` over all ranks; returns ``t``."""
        if isinstance(t, np.ndarray):
            self.mpi.Allreduce(MPI.IN_PLACE, t, op=OPS[op])
            return t
        host = _host(t)
        self.mpi.Allreduce(MPI.IN_PLACE, host.numpy(), op=OPS[op])
        return _back(t, host)

    def broadcast_(self, t: torch.Tensor, root: int = 0) -> torch.Tensor:
        """In-place copy of ``t`` from ``root``; returns ``t``."""
        host = _host(t)
        self.mpi.Bcast(host.reshape(-1).view(torch.uint8).numpy(), root=root)  # bytes: any dtype
        return _back(t, host)

    # -- Python objects ------------------------------------------------------------------------
    def allgather(self, obj: Any) -> list[Any]:
        return self.mpi.allgather(obj)

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        return self.mpi.gather(obj, root=root)

    def allreduce(self, value: Any, op: str = "sum") -> Any:
        """Reduction of a number over all ranks."""
        return self.mpi.allreduce(value, op=OPS[op])

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self.mpi.bcast(obj, root=root)

    def exscan(self, value: int) -> int:
        """Sum of ``value`` over the ranks before this one (0 on rank 0)."""
        return self.mpi.exscan(value) or 0

    def barrier(self) -> None:
        self.mpi.Barrier()

    def node(self) -> tuple[int, int]:
        """(this rank's index among the ranks on its node, their number): ranks that share memory."""
        node = self.mpi.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        try:
            return node.rank, node.size
        finally:
            node.Free()


def control_of(comm: "ControlChannel | MPI.Comm | None") -> ControlChannel:
    """``comm`` as a control channel (None: every rank of the job)."""
    if comm is None:
        return ControlChannel.world()
    return comm if isinstance(comm, ControlChannel) else ControlChannel(comm)


def mpi_library() -> str:
    """The first line of the MPI library's version string, e.g. 'MPICH Version: 5.0.2'."""
    return " ".join(MPI.Get_library_version().strip().splitlines()[0].split())


def mpi_standard() -> str:
    return "%d.%d" % MPI.Get_version()


def _host(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if it is a contiguous host tensor, else a contiguous host copy."""
    return t.detach().cpu().contiguous()


def _back(t: torch.Tensor, host: torch.Tensor) -> torch.Tensor:
    if host.data_ptr() != t.data_ptr() or t.device.type != "cpu":
        t.copy_(host.view(t.shape))
    return t
