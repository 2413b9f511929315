"""mpi4py communicator: buffer-based collectives on contiguous CPU tensors (no pickling)."""
from __future__ import annotations

import numpy as np
import torch
from mpi4py import MPI

from .base import BACKENDS, Communicator


def _buf(t: torch.Tensor) -> np.ndarray:
    if t.device.type != "cpu" or not t.is_contiguous():
        raise ValueError("the mpi backend needs contiguous CPU tensors; stage device tensors first")
    return t.detach().numpy()


@BACKENDS.register("mpi")
class MPICommunicator(Communicator):
    name = "mpi"

    def __init__(self, comm: MPI.Comm | None = None):
        self.comm = MPI.COMM_WORLD if comm is None else comm
        super().__init__(self.comm.rank, self.comm.size)
        self._graphs: dict[tuple, MPI.Distgraphcomm] = {}

    def allreduce_(self, t: torch.Tensor, average: bool = True) -> torch.Tensor:
        self._count(t.numel() * t.element_size())
        self.comm.Allreduce(MPI.IN_PLACE, _buf(t), op=MPI.SUM)
        if average and self.size > 1:
            t.div_(self.size)
        return t

    def allgather(self, t: torch.Tensor) -> list[torch.Tensor]:
        flat = t.reshape(-1).contiguous()
        counts = self.comm.allgather(flat.numel())  # also catches ranks that disagree on sizes
        out = torch.empty(sum(counts), dtype=flat.dtype)
        self._count(flat.numel() * flat.element_size())
        self.comm.Allgatherv(_buf(flat), [_buf(out), counts])
        return list(out.split(counts))

    def broadcast_(self, t: torch.Tensor, root: int = 0) -> torch.Tensor:
        self.comm.Bcast(_buf(t), root=root)
        self.calls += 1
        return t

    def neighbor_mix(self, x: torch.Tensor, plan) -> torch.Tensor:
        """One gossip round over a distributed-graph communicator (one per plan, created on first
        use, collectively): Neighbor_allgather of x, then the weighted sum with this rank's row of W."""
        key = (plan.sources, plan.destinations)
        if key not in self._graphs:
            self._graphs[key] = self.comm.Create_dist_graph_adjacent(list(plan.sources), list(plan.destinations),
                                                                     reorder=False)
        x = x.reshape(-1).contiguous()
        recv = torch.empty((len(plan.sources), x.numel()), dtype=x.dtype)
        self._count(x.numel() * x.element_size() * len(plan.destinations))
        self._graphs[key].Neighbor_allgather(_buf(x), _buf(recv))
        out = x * plan.self_weight
        for w, r in zip(plan.weights, recv):
            out.add_(r, alpha=w)
        return out

    def barrier(self) -> None:
        self.comm.Barrier()
