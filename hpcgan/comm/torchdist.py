"""torch.distributed communicator: gloo on CPU, nccl on GPU, bootstrapped from mpi4py.

Rank 0 of the MPI communicator picks a free TCP port on its host and broadcasts the address, then
every rank calls ``init_process_group(rank=comm.rank, world_size=comm.size)``. Rank and size come
from MPI, so it works the same under mpirun, mpiexec and srun with no launcher variables. One
process group per process: a second communicator over a communicator of the same size reuses it.
"""
from __future__ import annotations

import socket
from datetime import timedelta

import torch
import torch.distributed as dist
from mpi4py import MPI

from ..errors import UsageError
from ..netmodel import NetworkModel
from .base import BACKENDS, Communicator
from .control import ControlChannel


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def init_process_group(comm: MPI.Comm) -> str:
    """Initialise the default process group over ``comm``'s ranks; returns the backend name."""
    if dist.is_initialized():
        if dist.get_world_size() != comm.size or dist.get_rank() != comm.rank:
            raise UsageError("torch.distributed is already initialised over a different set of ranks")
        return dist.get_backend()
    backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    hosts = comm.allgather(socket.gethostname())
    addr = "127.0.0.1" if len(set(hosts)) == 1 else socket.gethostbyname(hosts[0])
    port = comm.bcast(_free_port() if comm.rank == 0 else None, root=0)
    dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=comm.rank,
                            world_size=comm.size, timeout=timedelta(seconds=120))
    return backend


@BACKENDS.register("torch")
class TorchCommunicator(Communicator):
    name = "torch"

    def __init__(self, comm: MPI.Comm | None = None, net: NetworkModel | None = None):
        if not dist.is_available():
            raise UsageError("backend 'torch' needs torch.distributed, which this torch build lacks")
        self.comm = MPI.COMM_WORLD if comm is None else comm
        super().__init__(self.comm.rank, self.comm.size, net, ControlChannel(self.comm))
        self.backend = init_process_group(self.comm)
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" \
            else torch.device("cpu")

    def _on_device(self, t: torch.Tensor) -> torch.Tensor:
        return t if t.device == self.device else t.to(self.device)

    def _allreduce(self, t: torch.Tensor) -> None:
        x = self._on_device(t)
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        if x is not t:
            t.copy_(x)

    def _allgather(self, t: torch.Tensor, counts: list[int] | None = None) -> list[torch.Tensor]:
        x = self._on_device(t)
        if counts is None:
            exchanged = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(self.size)]
            dist.all_gather(exchanged, torch.tensor([x.numel()], device=self.device))
            counts = [int(c) for c in exchanged]
        longest = max(counts)
        if x.numel() < longest:  # all_gather needs equal sizes: pad to the longest
            x = torch.cat([x, x.new_zeros(longest - x.numel())])
        parts = [x.new_empty(longest) for _ in range(self.size)]
        dist.all_gather(parts, x)
        return [p[:n].to(t.device) for p, n in zip(parts, counts)]

    def _broadcast(self, t: torch.Tensor, root: int) -> None:
        x = self._on_device(t)
        dist.broadcast(x, src=root)
        if x is not t:
            t.copy_(x)

    def barrier(self) -> None:
        dist.barrier()
