"""hpcgan's compressors outside hpcgan: a torch DDP communication hook and a Horovod Compression.

**DDP** (any compressor, with error feedback)::

    model.register_comm_hook(CompressionHook(build_compressor(CommConfig(compressor="topk"))), compression_hook)

For each gradient bucket b of rank m (DDP's flat buffer g of the bucket's gradients; the
parameters' lengths are the compressor's per-tensor sizes):
    p = g + e_b;   Delta = (1/M) sum_m Q(p_m);   e_b <- p - Q(p_m)      (:class:`~.feedback.ErrorFeedback`)
and DDP writes Delta into every rank's gradients. Delta comes from ``Communicator.aggregate`` over
the process group (:class:`ProcessGroupCommunicator`), so it is what hpcgan's own training
exchanges: an allreduce per round for summable payloads (PowerSGD: two), an allgather and a
decompression of every rank's payload otherwise, identical on every rank. The hook is synchronous
(it returns a completed future). Residuals are keyed by bucket index and length: DDP rebuilds its
buckets after the first iteration, which starts their residuals afresh once.

**Horovod** (one-round summable compressors whose payload is one tensor: fp16, bf16, randk)::

    hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
                             compression=HorovodCompression(build_compressor(CommConfig(compressor="randk"))))

implements ``hvd.Compression``'s interface: ``compress(tensor) -> (payload, ctx)``, Horovod sums or
averages the payloads of all ranks, ``decompress(payload, ctx)``. A summable payload's mean is the
payload of the mean, so the result is (1/M) sum_m Q(g_m). Horovod names no tensor to its
compression, so there is no error feedback here; random-k's shared coordinates need every rank to
compress the tensors in the same order (DistributedOptimizer does: backward order).
"""
# No ``from __future__ import annotations``: DDP checks the hook's annotations as objects.
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from ..comm.base import Communicator
from ..errors import UsageError
from .base import Compressor
from .feedback import ErrorFeedback


class ProcessGroupCommunicator(Communicator):
    """A :class:`Communicator` over an initialised torch.distributed process group (``None``: the
    default one), for code that did not start through hpcgan (no MPI, no control channel)."""

    name = "torch-group"

    def __init__(self, group: dist.ProcessGroup | None = None):
        super().__init__(dist.get_rank(group), dist.get_world_size(group))
        self.group = group

    def _allreduce(self, t: torch.Tensor) -> None:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)

    def _allgather(self, t: torch.Tensor, counts: list[int] | None = None) -> list[torch.Tensor]:
        if counts is None:
            sizes = [torch.zeros(1, dtype=torch.int64, device=t.device) for _ in range(self.size)]
            dist.all_gather(sizes, torch.tensor([t.numel()], device=t.device), group=self.group)
            counts = [int(c) for c in sizes]
        longest = max(counts)
        x = t if t.numel() == longest else torch.cat([t, t.new_zeros(longest - t.numel())])
        parts = [x.new_empty(longest) for _ in range(self.size)]
        dist.all_gather(parts, x, group=self.group)
        return [p[:n] for p, n in zip(parts, counts)]

    def _broadcast(self, t: torch.Tensor, root: int) -> None:
        src = root if self.group is None else dist.get_global_rank(self.group, root)
        dist.broadcast(t, src=src, group=self.group)

    def barrier(self) -> None:
        dist.barrier(group=self.group)


@dataclass
class CompressionHook:
    """The state of :func:`compression_hook`: the compressor, its error feedback, the group."""

    compressor: Compressor
    error_feedback: bool = True
    group: dist.ProcessGroup | None = None
    ef: ErrorFeedback = field(init=False)
    comm: ProcessGroupCommunicator | None = field(init=False, default=None)

    def __post_init__(self):
        self.ef = ErrorFeedback(self.compressor, self.error_feedback)


def compression_hook(state: CompressionHook, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: the bucket's gradients become (1/M) sum_m Q(g_m + e_m)."""
    if state.comm is None:
        state.comm = ProcessGroupCommunicator(state.group)
    grad = bucket.buffer()
    sizes = [g.numel() for g in bucket.gradients()]
    if sum(sizes) != grad.numel():
        sizes = [grad.numel()]
    payload, ctx = state.ef.compress(f"bucket{bucket.index()}:{grad.numel()}", grad, sizes)
    fut = torch.futures.Future()
    fut.set_result(state.comm.aggregate(payload, ctx, state.compressor).view_as(grad).to(grad.dtype))
    return fut


class HorovodCompression:
    """``hvd.Compression`` for a one-round summable compressor with a one-tensor payload."""

    def __init__(self, compressor: Compressor):
        if not compressor.summable or compressor.rounds != 1:
            raise UsageError(f"Horovod allreduces one tensor per gradient: {compressor.name} is not a one-round "
                             "summable compressor (use fp16, bf16 or randk, or the DDP hook)")
        self.compressor = compressor

    def compress(self, tensor: torch.Tensor) -> tuple[torch.Tensor, Any]:
        payload, ctx = self.compressor.compress(tensor.reshape(-1), [tensor.numel()])
        if len(payload) != 1:
            raise UsageError(f"{self.compressor.name}: Horovod needs a one-tensor payload")
        return payload[0], (tensor.shape, tensor.dtype, ctx)

    def decompress(self, tensor: torch.Tensor, ctx: Any) -> torch.Tensor:
        shape, dtype, inner = ctx
        return self.compressor.decompress([tensor], inner).view(shape).to(dtype)
