"""mpi4py communicator: buffer-based collectives on contiguous tensors (no pickling).

CUDA tensors go to MPI directly when mpi4py reports a CUDA-aware MPI library, and are staged
through host memory otherwise (copy out, collective, copy back).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from mpi4py import MPI

from ..netmodel import NetworkModel
from .base import BACKENDS, Communicator
from .control import ControlChannel


def _buf(t: torch.Tensor) -> np.ndarray:
    if t.device.type != "cpu" or not t.is_contiguous():
        raise ValueError("the mpi backend needs contiguous CPU tensors; stage device tensors first")
    return t.detach().numpy()


def cuda_aware() -> bool:
    """Whether the MPI library says it can read and write CUDA device memory."""
    try:
        return bool(MPI.Query_cuda_support())
    except (AttributeError, NotImplementedError, MPI.Exception):
        return False


@BACKENDS.register("mpi")
class MPICommunicator(Communicator):
    name = "mpi"

    def __init__(self, comm: MPI.Comm | None = None, net: NetworkModel | None = None):
        self.comm = MPI.COMM_WORLD if comm is None else comm
        super().__init__(self.comm.rank, self.comm.size, net, ControlChannel(self.comm))
        self._cuda_aware = cuda_aware()
        self._graphs: dict[tuple, MPI.Distgraphcomm] = {}

    @contextmanager
    def _host(self, t: torch.Tensor) -> Iterator[object]:
        """A buffer MPI can use for ``t``; device tensors are staged unless MPI is CUDA-aware."""
        if t.device.type == "cpu":
            yield _buf(t)
        elif self._cuda_aware:
            yield t.detach()
        else:
            host = t.detach().cpu()
            yield _buf(host)
            t.copy_(host)

    def _allreduce(self, t: torch.Tensor) -> None:
        with self._host(t) as buf:
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    def _allgather(self, t: torch.Tensor, counts: list[int] | None = None) -> list[torch.Tensor]:
        counts = counts or self.comm.allgather(t.numel())
        out = torch.empty(sum(counts), dtype=t.dtype)
        src = t.cpu() if t.device.type != "cpu" else t
        width = t.element_size()  # move raw bytes: numpy has no bfloat16
        self.comm.Allgatherv(_buf(src.view(torch.uint8)), [_buf(out.view(torch.uint8)), [c * width for c in counts]])
        return [p.to(t.device) for p in out.split(counts)]

    def _broadcast(self, t: torch.Tensor, root: int) -> None:
        with self._host(t) as buf:
            self.comm.Bcast(buf, root=root)

    def neighbor_mix(self, x: torch.Tensor, plan) -> torch.Tensor:
        """One gossip round over a distributed-graph communicator (one per plan, created on first
        use, collectively): Neighbor_allgather of x, then the weighted sum with this rank's row of W."""
        key = (plan.sources, plan.destinations)
        if key not in self._graphs:
            self._graphs[key] = self.comm.Create_dist_graph_adjacent(list(plan.sources), list(plan.destinations),
                                                                     reorder=False)
        x = x.reshape(-1).contiguous()
        recv = torch.empty((len(plan.sources), x.numel()), dtype=x.dtype)
        nbytes, degree = x.numel() * x.element_size(), len(plan.destinations)
        self._count(nbytes * degree, self.net.neighbor(nbytes, degree))
        self._graphs[key].Neighbor_allgather(_buf(x), _buf(recv))
        out = x * plan.self_weight
        for w, r in zip(plan.weights, recv):
            out.add_(r, alpha=w)
        return out

    def barrier(self) -> None:
        self.comm.Barrier()
