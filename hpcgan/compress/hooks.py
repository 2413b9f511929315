"""hpcgan's compressors outside hpcgan: a torch DDP communication hook and a Horovod Compression.

**DDP** (any compressor, with error feedback)::

    model.register_comm_hook(CompressionHook(build_compressor("topk", ratio=0.01)), compression_hook)

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
                             compression=HorovodCompression(build_compressor("randk", ratio=0.25)))

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
from ..comm.torchdist import TorchCommunicator
from ..errors import UsageError
from .base import Compressor
from .feedback import ErrorFeedback


class ProcessGroupCommunicator(TorchCommunicator):
    """The torch backend's :class:`~hpcgan.comm.torchdist.TorchCommunicator` over an initialised
    torch.distributed process group (``None``: the default one), for code that did not start
    through hpcgan: no MPI bootstrap, no control channel."""

    name = "torch-group"

    def __init__(self, group: dist.ProcessGroup | None = None):
        nccl = dist.get_backend(group) == "nccl"
        Communicator.__init__(self, dist.get_rank(group), dist.get_world_size(group),
                              transport=torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu"),
                              direct=frozenset({"cuda"} if nccl else {"cpu"}))
        self.group = group


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
