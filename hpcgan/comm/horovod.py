"""Horovod communicator (``make horovod`` builds it for this torch + MPI).

``hvd.init(comm)`` over the given mpi4py communicator; dense sums use ``hvd.allreduce_`` with
``op=hvd.Sum`` (Horovod's own fusion and ring/tree algorithms), payloads of any length use
``hvd.allgather`` (concatenation along dim 0). fp16 sums are Horovod's own (its MPI op adds pairs in
fp32 and rounds once, as :func:`.mpi.half_sum_op` does); Horovod has no bfloat16, so bf16 sums run
hpcgan's MPI op over the same ranks. Horovod's wire compression (``hvd.Compression``)
is not used: hpcgan's compressors run before the communicator, so every backend moves the same
bytes. Gossip (neighbour exchange) has no Horovod equivalent and raises UsageError. Horovod built
with NCCL takes CUDA tensors as they are; otherwise the base class stages them through reused
pinned host buffers.
"""
from __future__ import annotations

import torch
from mpi4py import MPI

from ..errors import UsageError
from ..netmodel import NetworkModel
from .base import BACKENDS, Communicator
from .control import ControlChannel
from .mpi import allreduce_half


def import_horovod():
    try:
        import horovod.torch as hvd
    except ImportError as e:
        raise UsageError(f"backend 'horovod' needs Horovod built for this torch and MPI: run "
                         f"`make horovod` ({e})") from None
    return hvd


@BACKENDS.register("horovod")
class HorovodCommunicator(Communicator):
    name = "horovod"

    def __init__(self, comm: MPI.Comm | None = None, net: NetworkModel | None = None, emulate: str = "account"):
        self.hvd = hvd = import_horovod()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        if not hvd.is_initialized():
            hvd.init(comm=self.comm)
        if hvd.size() != self.comm.size or hvd.rank() != self.comm.rank:
            raise UsageError("Horovod is already initialised over a different set of ranks")
        self.data = self.comm.Dup()  # bf16 sums (Horovod has no bfloat16): never matched with a control message
        super().__init__(self.comm.rank, self.comm.size, net, ControlChannel(self.comm),
                         direct=frozenset({"cpu", "cuda"} if hvd.nccl_built() else {"cpu"}), emulate=emulate)

    def _allreduce(self, t: torch.Tensor) -> None:
        self.hvd.allreduce_(t, op=self.hvd.Sum)

    def _allreduce_half(self, t: torch.Tensor) -> None:
        if t.dtype == torch.float16:
            self.hvd.allreduce_(t, op=self.hvd.Sum)
        elif t.device.type == "cpu":
            allreduce_half(self.data, t)
        else:
            x = t.cpu()
            allreduce_half(self.data, x)
            t.copy_(x)

    def _allgather(self, t: torch.Tensor, out: torch.Tensor, counts: list[int]) -> None:
        out.view(torch.uint8).copy_(self.hvd.allgather(t.view(torch.uint8)))  # bytes: Horovod has no bfloat16

    def _broadcast(self, t: torch.Tensor, root: int) -> None:
        self.hvd.broadcast_(t.view(torch.uint8), root_rank=root)  # bytes, in place: Horovod has no bfloat16

    def barrier(self) -> None:
        self.hvd.barrier()
