"""Communicator: moves tensors between ranks and counts what it hands to the transport.

Communicators never compress and never own model state. A backend implements four raw
primitives (``_allreduce``, ``_allgather``, ``_broadcast``, ``barrier``); this class adds, in one
place for every backend, the size checks and the accounting:

* ``bytes_sent`` counts the bytes of the payload this rank hands to the transport per call (an
  allreduce of d fp32 values counts 4d; an allgather counts this rank's payload once), which is
  what compression changes; the transport's own algorithm (ring, tree) multiplies it by a factor
  that does not depend on the compressor. Control messages (size checks) are not counted.
* ``calls`` counts collective calls, so a test can prove an algorithm communicated nothing.
* ``t_net_emulated`` adds the modelled time of each collective under ``net`` (:mod:`hpcgan.netmodel`).
* ``control`` is the uncounted :class:`~.control.ControlChannel` over the same ranks, for
  everything that is not training data (flags, sizes, consensus, evaluation).
* Device placement, also in one place: a backend declares the device types its transport takes
  as they are (``direct``) and the device of its staging buffers (``transport``). A tensor anywhere
  else (a CUDA tensor on a host-staged MPI or on gloo, a CPU tensor on NCCL) is copied into a
  reused :class:`~.staging.Staging` buffer (pinned host memory when CUDA is available), the
  primitive runs on the buffer and the result is copied back, so every public collective works
  for CPU and CUDA tensors on every backend. Primitives therefore only ever see contiguous 1-D
  tensors on a device the transport takes.

16-bit floats (fp16, bf16) are summed by the backend's ``_allreduce_half`` (mpi: an MPI op running
a C kernel; horovod: Horovod's own fp16 sum, that C op for bf16; torch: gloo's and NCCL's own). Every
one adds two partial sums by the correctly rounded 16-bit sum lowp(fp32(a) + fp32(b)), so:

1. every rank gets the same bits (the sum of two operands does not depend on their order);
2. at 2 ranks the result is the correctly rounded sum, the same bits on every backend, and the
   same as summing in fp32 and rounding once;
3. at more ranks each partial sum is rounded to 16 bits, in the order of the transport's own
   algorithm (ring, tree, recursive doubling), so backends may differ in the last bits; a run on
   one backend with the same ranks is deterministic.

Special values follow IEEE: a NaN anywhere gives NaN; +inf and -inf give NaN; a finite sum past the
16-bit range gives +-inf (fp16 overflows at 65520, bf16 as fp32); subnormal inputs and sums are kept.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext

import torch

from ..config import CommConfig
from ..errors import UsageError
from ..registry import Registry
from ..netmodel import NetworkModel
from .staging import Staging

BACKENDS: Registry[type["Communicator"]] = Registry("backend")
_HALF = (torch.float16, torch.bfloat16)


class Communicator(ABC):
    name: str = "abstract"

    def __init__(self, rank: int, size: int, net: NetworkModel | None = None,
                 control: ControlChannel | None = None, transport: torch.device = torch.device("cpu"),
                 direct: frozenset[str] = frozenset({"cpu"})):
        self.rank, self.size = rank, size
        self.control = control
        self.direct = direct  # device types the transport takes as they are; others are staged
        self.staging = Staging(transport)
        self.net = net or NetworkModel()
        self.bytes_sent = 0
        self.calls = 0
        self.t_net_emulated = 0.0
        self._checked: set[tuple] = set()  # payload signatures whose sizes every rank agreed on

    @classmethod
    def from_config(cls, cfg: CommConfig, comm=None) -> "Communicator":
        """This backend over ``comm`` (an mpi4py communicator; default COMM_WORLD) for ``cfg``."""
        if cfg.cuda_aware_mpi == "yes":
            raise UsageError(f"--cuda-aware-mpi yes applies to --backend mpi, not '{cls.name}'")
        return cls(comm, NetworkModel(cfg.net_latency, cfg.net_bandwidth))

    def _count(self, nbytes: int, emulated: float = 0.0) -> None:
        """Record one call handing ``nbytes`` to the transport (nothing leaves a 1-rank job)."""
        if self.size > 1:
            self.bytes_sent += int(nbytes)
            self.t_net_emulated += emulated
        self.calls += 1

    # -- backend primitives (no accounting, no staging) -----------------------------------------
    @abstractmethod
    def _allreduce(self, t: torch.Tensor) -> None:
        """In-place elementwise sum of ``t`` over all ranks."""

    def _allreduce_half(self, t: torch.Tensor) -> None:
        """In-place sum of the 16-bit float ``t`` over all ranks, each pair of partial sums added as
        lowp(fp32(a) + fp32(b)) (module doc). This default gathers every rank's values and adds them
        in rank order that way, on any transport; backends override it with a sum on the wire."""
        parts = self._gather(t, [t.numel()] * self.size)
        t.copy_(parts[0])
        for p in parts[1:]:
            t.copy_(p.float().add_(t.float()))

    @abstractmethod
    def _allgather(self, t: torch.Tensor, out: torch.Tensor, counts: list[int]) -> None:
        """Every rank's ``t`` into ``out`` in rank order; rank r sends ``counts[r]`` elements and
        ``out`` (same dtype and device as ``t``) holds ``sum(counts)``."""

    @abstractmethod
    def _broadcast(self, t: torch.Tensor, root: int) -> None:
        """In-place copy of ``t`` from ``root``."""

    def _neighbor_allgather(self, x: torch.Tensor, out: torch.Tensor, plan) -> None:
        """Row k of ``out`` (one row per entry of ``plan.sources``) = x of rank ``plan.sources[k]``;
        x goes to every rank of ``plan.destinations``."""
        raise UsageError(f"gossip (neighbor_mix) is not supported on backend '{self.name}'; use --backend mpi")

    @abstractmethod
    def barrier(self) -> None:
        """Wait for every rank."""

    # -- staging ----------------------------------------------------------------------------------
    def _takes(self, t: torch.Tensor) -> bool:
        """Whether the transport takes ``t`` as it is: contiguous, on a device type in ``direct``."""
        return t.device.type in self.direct and t.is_contiguous()

    def _stage(self, t: torch.Tensor, slot: str = "send") -> torch.Tensor:
        """A copy of ``t`` in the reused staging buffer ``slot`` (1-D, on the transport's device)."""
        buf = self.staging.buffer(slot, t.dtype, t.numel())
        buf.view(t.shape).copy_(t)
        return buf

    def _in_place(self, primitive, t: torch.Tensor, *args) -> torch.Tensor:
        """Run the in-place ``primitive`` on ``t``, staged there and back if the transport does not
        take ``t`` as it is; returns ``t``."""
        if self._takes(t):
            primitive(t.view(-1), *args)
        else:
            x = self._stage(t)
            primitive(x, *args)
            t.copy_(x.view(t.shape))
        return t

    def _gather(self, t: torch.Tensor, counts: list[int] | None = None) -> list[torch.Tensor]:
        """Every rank's 1-D ``t`` in rank order, on ``t``'s device (uncounted). Without ``counts``
        the lengths are exchanged first."""
        if counts is None:
            counts = [int(c) for c in self._gather(torch.tensor([t.numel()], dtype=torch.int64), [1] * self.size)]
        out = torch.empty(sum(counts), dtype=t.dtype, device=t.device)
        if self._takes(t):
            self._allgather(t, out, counts)
        else:
            staged = self.staging.buffer("recv", t.dtype, out.numel())
            self._allgather(self._stage(t), staged, counts)
            out.copy_(staged)
        return list(out.split(counts))

    # -- public collectives ---------------------------------------------------------------------
    def allreduce_(self, t: torch.Tensor, average: bool = True) -> torch.Tensor:
        """In-place sum (or mean) of ``t`` over all ranks; returns ``t``."""
        nbytes = t.numel() * t.element_size()
        self._count(nbytes, self.net.allreduce(nbytes, self.size))
        self._in_place(self._allreduce_half if t.dtype in _HALF else self._allreduce, t)
        if average and self.size > 1:
            t.div_(self.size)
        return t

    def allgather(self, t: torch.Tensor, counts: list[int] | None = None) -> list[torch.Tensor]:
        """Every rank's 1-D tensor, in rank order (lengths may differ between ranks; pass them as
        ``counts`` if known, to skip the exchange of lengths)."""
        flat = t.reshape(-1)
        nbytes = flat.numel() * flat.element_size()
        self._count(nbytes, self.net.allgather(nbytes, self.size))
        return self._gather(flat, counts)

    def broadcast_(self, t: torch.Tensor, root: int = 0) -> torch.Tensor:
        """In-place copy of ``t`` from ``root`` to every rank; returns ``t``."""
        nbytes = t.numel() * t.element_size()
        self._count(nbytes if self.rank == root else 0, self.net.broadcast(nbytes, self.size))
        return self._in_place(self._broadcast, t, root)

    def check_same_size(self, n: int, what: str = "payload") -> None:
        """Raise UsageError on every rank unless every rank passes the same ``n`` (control message)."""
        sizes = [int(s) for s in self._gather(torch.tensor([n], dtype=torch.int64), [1] * self.size)]
        if len(set(sizes)) > 1:
            raise UsageError(f"ranks disagree on the {what} size: {sizes} (rank order); "
                             "every rank must communicate tensors of the same shapes")

    def neighbor_mix(self, x: torch.Tensor, plan) -> torch.Tensor:
        """One gossip round (DPOSG): self_weight x + sum_k weights[k] x^{sources[k]} for a
        :class:`~hpcgan.comm.topology.GossipPlan`, sending x to every rank in ``plan.destinations``;
        counts the bytes of x times the out-degree. Collective over all ranks of the communicator."""
        x = x.reshape(-1)
        shape = (len(plan.sources), x.numel())
        if self._takes(x):
            recv = torch.empty(shape, dtype=x.dtype, device=x.device)
            self._neighbor_allgather(x, recv, plan)
        else:
            recv = self.staging.buffer("recv", x.dtype, shape[0] * shape[1]).view(shape)
            self._neighbor_allgather(self._stage(x), recv, plan)
            recv = recv.to(x.device)  # used right here, never returned: no copy needed on the host
        nbytes, degree = x.numel() * x.element_size(), len(plan.destinations)
        self._count(nbytes * degree, self.net.neighbor(nbytes, degree))
        out = x * plan.self_weight
        for w, r in zip(plan.weights, recv):
            out.add_(r, alpha=w)
        return out

    # -- compressed aggregation -----------------------------------------------------------------
    def aggregate(self, payload: list[torch.Tensor], ctx, compressor, timer=None) -> torch.Tensor:
        """Delta = (1/M) sum_m decompress(payload_m), identical on every rank, one collective (per round).

        Summable payloads are concatenated and allreduced, then decompressed once (a multi-round
        compressor's later payloads are built from the previous round's sum, each one allreduce:
        see :mod:`hpcgan.compress.base`). Others are
        concatenated into one byte buffer per rank and allgathered; every rank decompresses every
        rank's payload into one buffer, adding them in rank order.

        The first time a payload signature (compressor, shapes, dtypes) is seen, the ranks check
        collectively that their payloads have the same size, and raise UsageError together instead
        of hanging if not. Later calls with that signature are one collective and nothing else, as
        sync's plain allreduce is, so their latency compares fairly. This relies on a payload's
        size depending only on the size of the compressed buffer (true of every registered
        compressor, every round included, and tested): a rank's signature changes only if its
        model does.

        ``timer`` (a :class:`~hpcgan.results.timer.PhaseTimer`) times the collective as "comm" and the
        decompression as "compress", the phase that local (de)compression work belongs to.
        """
        phase = timer or (lambda name: nullcontext())
        nbytes = sum(t.numel() * t.element_size() for t in payload)
        signature = (compressor.name, tuple((tuple(t.shape), t.dtype) for t in payload))
        if signature not in self._checked:
            with phase("comm"):
                self.check_same_size(nbytes, "compressed payload")
            self._checked.add(signature)
        if compressor.summable:
            for r in range(compressor.rounds):  # one allreduce per round (PowerSGD: two)
                if r:
                    with phase("compress"):
                        payload = compressor.next_round(summed, ctx)
                buf = payload[0].reshape(-1) if len(payload) == 1 else torch.cat([t.reshape(-1) for t in payload])
                with phase("comm"):
                    buf = self.allreduce_(buf.clone(), average=False)
                summed = [p.view_as(t) for p, t in zip(buf.split([t.numel() for t in payload]), payload)]
            with phase("compress"):
                return compressor.decompress(summed, ctx).div_(self.size)
        with phase("comm"):
            gathered = self.allgather(to_bytes(payload), counts=[nbytes] * self.size)
        with phase("compress"):
            total = compressor.decompress(from_bytes(gathered[0], payload), ctx)
            for g in gathered[1:]:
                compressor.decompress_add(from_bytes(g, payload), ctx, total)
            return total.div_(self.size)


def to_bytes(payload: list[torch.Tensor]) -> torch.Tensor:
    """The payload tensors' bytes, concatenated (widest dtypes first, so every part stays aligned)."""
    order = sorted(range(len(payload)), key=lambda i: -payload[i].element_size())
    return torch.cat([payload[i].reshape(-1).contiguous().view(torch.uint8) for i in order])


def from_bytes(wire: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Inverse of :func:`to_bytes`: tensors shaped and typed like ``like``, viewing ``wire``."""
    if wire.storage_offset() % 8:
        wire = wire.clone()  # another rank's slice of a gather buffer may start unaligned
    order = sorted(range(len(like)), key=lambda i: -like[i].element_size())
    out: list[torch.Tensor | None] = [None] * len(like)
    offset = 0
    for i in order:
        n = like[i].numel() * like[i].element_size()
        out[i] = wire[offset:offset + n].view(like[i].dtype).view(like[i].shape)
        offset += n
    return out
