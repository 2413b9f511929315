"""Peers of ``hpcgan bench comm``: what a user would pick instead of hpcgan's compressed aggregate,
timed the same way on the same tensor over the same transport.

* ``torch-fp16-hook``: torch's DDP communication hook ``fp16_compress_hook`` (cast, allreduce in
  fp16, cast back), compared with hpcgan's ``fp16`` on backend ``torch`` (gloo/nccl);
* ``torch-powersgd-hook``: torch's ``powerSGD_hook`` at rank 4, warm start, without error feedback
  (hpcgan's bench rows have none either), the gradient viewed as the near-square matrix
  rows x cols = d, compared with hpcgan's ``powersgd`` on backend ``torch``;
* ``hvd-fp16``: ``hvd.allreduce`` with Horovod's own ``hvd.Compression.fp16``, compared with hpcgan's
  ``fp16`` on backend ``horovod``.

torch's hooks are called directly on one gradient bucket (:class:`Bucket`, the part of
``dist.GradBucket`` they read: the real class has no Python constructor) and waited for, so the
timing covers their compression, collective and decompression and no backward pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from ..comm import Communicator

POWERSGD_RANK = 4


@dataclass(frozen=True)
class Peer:
    name: str                      # its /comm op
    backend: str                   # the hpcgan backend it runs over
    versus: str                    # the hpcgan op it is compared with
    build: Callable[[torch.Tensor, Communicator], Callable[[], object]]  # tensor, comm -> timed call
    wire: Callable[[int], int]     # bytes this rank hands to the transport per call, for d values


class Bucket:
    """One bucket holding one gradient of ``shape`` (what torch's hooks call on a GradBucket)."""

    def __init__(self, flat: torch.Tensor, shape: tuple[int, ...]):
        self._buffer, self.shape = flat, shape

    def buffer(self) -> torch.Tensor:
        return self._buffer

    def set_buffer(self, t: torch.Tensor) -> None:
        self._buffer = t

    def gradients(self) -> list[torch.Tensor]:
        return [self._buffer.view(self.shape)]

    def index(self) -> int:
        return 0

    def is_last(self) -> bool:
        return True


def near_square(d: int) -> tuple[int, int]:
    """rows x cols = d with rows the largest divisor of d not above sqrt(d)."""
    rows = next(r for r in range(math.isqrt(d), 0, -1) if d % r == 0)
    return rows, d // rows


def torch_fp16(x: torch.Tensor, comm: Communicator) -> Callable[[], object]:
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import fp16_compress_hook
    bucket = Bucket(x.clone(), (x.numel(),))
    return lambda: fp16_compress_hook(None, bucket).wait()


def torch_powersgd(x: torch.Tensor, comm: Communicator) -> Callable[[], object]:
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as ps
    state = ps.PowerSGDState(process_group=None, matrix_approximation_rank=POWERSGD_RANK, start_powerSGD_iter=2,
                             use_error_feedback=False, warm_start=True)
    bucket = Bucket(x.clone(), near_square(x.numel()))
    return lambda: ps.powerSGD_hook(state, bucket).wait()


def horovod_fp16(x: torch.Tensor, comm: Communicator) -> Callable[[], object]:
    hvd = comm.hvd
    return lambda: hvd.allreduce(x, op=hvd.Sum, compression=hvd.Compression.fp16)


def powersgd_wire(d: int) -> int:
    """P and Q in fp32 when torch's hook compresses the rows x cols view, else the dense fp32 tensor."""
    rows, cols = near_square(d)
    r = min(rows, cols, POWERSGD_RANK)
    return 4 * r * (rows + cols) if rows * cols > 2 * r * (rows + cols) else 4 * d


PEERS = (Peer("torch-fp16-hook", "torch", "fp16", torch_fp16, lambda d: 2 * d),
         Peer("torch-powersgd-hook", "torch", "powersgd", torch_powersgd, powersgd_wire),
         Peer("hvd-fp16", "horovod", "fp16", horovod_fp16, lambda d: 2 * d))


def peers_for(backend: str) -> list[Peer]:
    return [p for p in PEERS if p.backend == backend and (backend != "torch" or dist.is_initialized())]
