"""hpcgan's compressors outside hpcgan: a torch DDP communication hook and a Horovod Compression.
Importing this module starts neither MPI nor a process group (it works under torchrun).

**DDP** (any compressor, with error feedback)::

    model.register_comm_hook(CompressionHook(build_compressor("topk", ratio=0.01)), compression_hook)

For each gradient bucket b of rank m (DDP's flat buffer g of the bucket's gradients; the
parameters' lengths are the compressor's per-tensor sizes), an :class:`~hpcgan.exchange.Exchange`
over the process group (:class:`ProcessGroupCommunicator`):

1. compensate p = g + e_b;  2. compress;  3. e_b <- p - Q(p_m);  4. send;  5. Delta = (1/M) sum_m Q(p_m)

and DDP writes Delta into every rank's gradients. Steps 1-3 run in the hook; the hook returns the
future of steps 4-5, which run on the exchange's transport thread (an allreduce per round for
summable payloads -- PowerSGD: two --, an allgather and a decompression of every rank's payload
otherwise), so DDP goes on with backward while the bucket's bytes move, as with torch's own hooks.
Buckets' exchanges run in the order DDP calls the hook, the same on every rank. Residuals are
keyed by bucket index and length: DDP rebuilds its buckets after the first iteration, which
starts their residuals afresh once.

**Horovod** (one-round summable compressors whose payload is one tensor: fp16, bf16, randk)::

    hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
                             compression=HorovodCompression(build_compressor("randk", ratio=0.01),
                                                            named_parameters=model.named_parameters()))

implements ``hvd.Compression``'s interface: ``compress(tensor) -> (payload, ctx)``, Horovod sums or
averages the payloads of all ranks, ``decompress(payload, ctx)``. A summable payload's mean is the
payload of the mean, so the result is (1/M) sum_m Q(g_m + e_m). Horovod hands its compression the
gradient tensor only (``p.grad``), not its name; given ``named_parameters``, the gradient is
matched to its parameter by identity and gets that parameter's error-feedback residual. Without
them there is no error feedback (Horovod's API gives nothing to key a residual by). Random-k's
shared coordinates need every rank to compress the tensors in the same order (DistributedOptimizer
does: backward order).
"""
# No ``from __future__ import annotations``: DDP checks the hook's annotations as objects.
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch
import torch.distributed as dist

from ..comm.base import Communicator
from ..comm.torchdist import TorchCommunicator
from ..errors import UsageError
from ..exchange import Exchange
from .base import Compressor
from .feedback import ErrorFeedback


class ProcessGroupCommunicator(TorchCommunicator):
    """The torch backend's :class:`~hpcgan.comm.torchdist.TorchCommunicator` over an initialised
    torch.distributed process group (``None``: the default one), for code that did not start
    through hpcgan: no MPI bootstrap, no control channel."""

    name = "torch-group"

    def __init__(self, group: Optional[dist.ProcessGroup] = None):
        nccl = dist.get_backend(group) == "nccl"
        Communicator.__init__(self, dist.get_rank(group), dist.get_world_size(group),
                              transport=torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu"),
                              direct=frozenset({"cuda"} if nccl else {"cpu"}))
        self.group = group


@dataclass
class CompressionHook:
    """The state of :func:`compression_hook`: the compressor, its error feedback, the group, and
    the exchange built over the group on the first call."""

    compressor: Compressor
    error_feedback: bool = True
    group: Optional[dist.ProcessGroup] = None
    exchange: Optional[Exchange] = field(init=False, default=None)

    @property
    def memory(self) -> ErrorFeedback:
        """The residuals of every bucket (empty before the first call)."""
        return self.exchange.memory if self.exchange else ErrorFeedback(self.error_feedback)


def compression_hook(state: CompressionHook, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: the bucket's gradients become (1/M) sum_m Q(g_m + e_m); returns the
    exchange's pending future."""
    if state.exchange is None:
        state.exchange = Exchange(ProcessGroupCommunicator(state.group), state.compressor, state.error_feedback)
    grad = bucket.buffer()
    sizes = [g.numel() for g in bucket.gradients()]
    if sum(sizes) != grad.numel():
        sizes = [grad.numel()]
    fut = state.exchange.start(f"bucket{bucket.index()}:{grad.numel()}", grad, sizes)
    return fut.then(lambda f: f.value().view_as(grad).to(grad.dtype))


class HorovodCompression:
    """``hvd.Compression`` for a one-round summable compressor with a one-tensor payload, with
    error feedback when given the model's ``named_parameters``."""

    def __init__(self, compressor: Compressor, named_parameters: Optional[Iterable[tuple[str, torch.nn.Parameter]]] = None,
                 error_feedback: bool = True):
        if not compressor.summable or compressor.rounds != 1:
            raise UsageError(f"Horovod allreduces one tensor per gradient: {compressor.name} is not a one-round "
                             "summable compressor (use fp16, bf16 or randk, or the DDP hook)")
        self.compressor = compressor
        self.params = list(named_parameters or [])
        self.memory = ErrorFeedback(error_feedback and bool(self.params))
        self._names: dict[int, tuple[str, torch.nn.Parameter]] = {}

    def _name(self, tensor: torch.Tensor) -> Optional[str]:
        """The parameter whose gradient ``tensor`` is, by identity (gradients may be new tensors
        every step, and a new one may reuse a freed one's id: a hit is confirmed, else rebuilt)."""
        hit = self._names.get(id(tensor))
        if hit is None or hit[1].grad is not tensor:
            self._names = {id(p.grad): (name, p) for name, p in self.params if p.grad is not None}
            hit = self._names.get(id(tensor))
        return hit[0] if hit is not None and hit[1].grad is tensor else None

    def compress(self, tensor: torch.Tensor) -> tuple[torch.Tensor, Any]:
        name = self._name(tensor) if self.memory.enabled else None
        x = tensor.reshape(-1)
        p = x if name is None else self.memory.compensate(name, x.float())
        payload, ctx = self.compressor.compress(p, [tensor.numel()])
        if len(payload) != 1:
            raise UsageError(f"{self.compressor.name}: Horovod needs a one-tensor payload")
        if name is not None:
            self.memory.update(name, p, self.compressor.local(payload, ctx).reshape(-1))
        return payload[0], (tensor.shape, tensor.dtype, ctx)

    def decompress(self, tensor: torch.Tensor, ctx: Any) -> torch.Tensor:
        shape, dtype, inner = ctx
        return self.compressor.decompress([tensor], inner).view(shape).to(dtype)
