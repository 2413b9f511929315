"""torch.distributed communicator: nccl when every rank drives its own GPU, gloo otherwise,
bootstrapped from mpi4py.

Rank 0 of the MPI communicator picks a free TCP port on its host and broadcasts the address, then
every rank calls ``init_process_group(rank=comm.rank, world_size=comm.size)``. Rank and size come
from MPI, so it works the same under mpirun, mpiexec and srun with no launcher variables. One
process group per process: a second communicator over a communicator of the same size reuses it.

NCCL refuses two ranks on one GPU, so :func:`choose_backend` picks nccl only when CUDA works, NCCL
is built and no two ranks share a GPU (by UUID, whatever ``CUDA_VISIBLE_DEVICES`` each rank sees);
otherwise gloo, whose transport takes host memory: the base class stages CUDA tensors through
reused pinned buffers. With nccl, host tensors are staged to the GPU instead.
"""
from __future__ import annotations

import socket
from datetime import timedelta

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from ..errors import UsageError
from ..log import get_logger
from ..netmodel import NetworkModel
from .base import BACKENDS, Communicator

if TYPE_CHECKING:  # imported where used: a process group built by other code needs no MPI
    from mpi4py import MPI


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def choose_backend(gpus: list[tuple[str, str | None]], nccl_available: bool) -> str:
    """nccl if every rank has a GPU and no two ranks share one (``gpus``: every rank's (host, GPU
    UUID or None)) and NCCL is built; gloo otherwise."""
    every_rank_own_gpu = all(uuid is not None for _, uuid in gpus) and len(set(gpus)) == len(gpus)
    return "nccl" if nccl_available and every_rank_own_gpu else "gloo"


def init_process_group(comm: "MPI.Comm") -> str:
    """Initialise the default process group over ``comm``'s ranks; returns the backend name."""
    from ..world import gpu_uuid
    if dist.is_initialized():
        if dist.get_world_size() != comm.size or dist.get_rank() != comm.rank:
            raise UsageError("torch.distributed is already initialised over a different set of ranks")
        return dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    gpus = comm.allgather((socket.gethostname(), gpu_uuid(device)))
    backend = choose_backend(gpus, dist.is_nccl_available())
    if backend == "gloo" and all(uuid is not None for _, uuid in gpus) and comm.rank == 0:
        get_logger().info("torch backend: gloo with host staging (ranks share a GPU or NCCL is missing)")
    hosts = [host for host, _ in gpus]
    addr = "127.0.0.1" if len(set(hosts)) == 1 else socket.gethostbyname(hosts[0])
    port = comm.bcast(_free_port() if comm.rank == 0 else None, root=0)
    dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=comm.rank,
                            world_size=comm.size, timeout=timedelta(seconds=120))
    return backend


@BACKENDS.register("torch")
class TorchCommunicator(Communicator):
    name = "torch"

    def __init__(self, comm: "MPI.Comm | None" = None, net: NetworkModel | None = None, emulate: str = "account"):
        from mpi4py import MPI

        from .control import ControlChannel
        if not dist.is_available():
            raise UsageError("backend 'torch' needs torch.distributed, which this torch build lacks")
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.backend = init_process_group(self.comm)
        nccl = self.backend == "nccl"
        super().__init__(self.comm.rank, self.comm.size, net, ControlChannel(self.comm),
                         transport=torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu"),
                         direct=frozenset({"cuda"} if nccl else {"cpu"}), emulate=emulate)

    #: the torch.distributed process group the primitives run on (None: the default group)
    group: dist.ProcessGroup | None = None

    def _allreduce(self, t: torch.Tensor) -> None:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)

    def _allreduce_half(self, t: torch.Tensor) -> None:
        """gloo and NCCL sum fp16 and bf16 themselves, each pair of partial sums in fp32 rounded once."""
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)

    def _allgather(self, t: torch.Tensor, out: torch.Tensor, counts: list[int]) -> None:
        """Raw bytes, as the mpi backend moves them: gloo has no all_gather for some dtypes (int16)."""
        width = t.element_size()
        t, out, counts = t.view(torch.uint8), out.view(torch.uint8), [c * width for c in counts]
        longest = max(counts)
        if all(c == longest for c in counts):  # straight into out
            dist.all_gather(list(out.split(counts)), t, group=self.group)
            return
        padded = torch.cat([t, t.new_zeros(longest - t.numel())])  # all_gather needs equal sizes
        parts = [t.new_empty(longest) for _ in range(self.size)]
        dist.all_gather(parts, padded, group=self.group)
        for p, o in zip(parts, out.split(counts)):
            o.copy_(p[:o.numel()])

    def _broadcast(self, t: torch.Tensor, root: int) -> None:
        dist.broadcast(t, src=root if self.group is None else dist.get_global_rank(self.group, root), group=self.group)

    def barrier(self) -> None:
        dist.barrier(group=self.group)
