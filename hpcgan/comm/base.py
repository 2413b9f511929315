"""Communicator: moves tensors between ranks and counts what it hands to the transport.

Communicators never compress and never own model state (compressed exchanges are
:mod:`hpcgan.exchange`). A backend implements four raw primitives (``_allreduce``, ``_allgather``,
``_broadcast``, ``barrier``); this class adds, in one place for every backend, the size checks, the
accounting and the non-blocking path:

* Primitives: ``allreduce_``, ``allgather``, ``broadcast_``, ``neighbor_mix`` (gossip), blocking.
  ``submit(program)`` is the non-blocking form: the program (a function calling those primitives)
  runs on the communicator's :class:`~.transport.Transport` worker, in submission order, and a
  ``torch.futures.Future`` is the handle; ``iallreduce_`` / ``iallgather`` are the one-primitive
  programs. A blocking call on the compute thread first waits for everything submitted before it,
  so collectives keep one order on every rank.
* ``bytes_sent`` counts the bytes of the payload this rank hands to the transport per call (an
  allreduce of d fp32 values counts 4d; an allgather counts this rank's payload once), which is
  what compression changes; the transport's own algorithm (ring, tree) multiplies it by a factor
  that does not depend on the compressor. Control messages (size checks) are not counted.
* ``calls`` counts collective calls, so a test can prove an algorithm communicated nothing.
* The network model ``net`` (:mod:`hpcgan.netmodel`), by ``emulate``: ``account`` adds each
  collective's modelled time to ``t_net_emulated``, recorded next to (never inside) the measured
  times; ``delay`` makes the collective also wait its modelled time, on the thread that runs it
  (the transport worker for submitted programs): on one machine, communication then takes time that
  compute can hide, and the measured times include it (``t_net_emulated`` stays 0).
* ``control`` is the uncounted :class:`~.control.ControlChannel` over the same ranks, for
  everything that is not training data (flags, sizes, consensus, evaluation).
* Device placement, also in one place: a backend declares the device types its transport takes
  as they are (``direct``) and the device of its staging buffers (``transport``). A tensor anywhere
  else (a CUDA tensor on a host-staged MPI or on gloo, a CPU tensor on NCCL) is copied into a
  reused :class:`~.staging.Staging` buffer (pinned host memory when CUDA is available), the
  primitive runs on the buffer and the result is copied back, so every public collective works
  for CPU and CUDA tensors on every backend. Primitives therefore only ever see contiguous 1-D
  tensors on a device the transport takes. The worker thread has staging buffers of its own.

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

import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Hashable

import torch

from ..config import CommConfig
from ..errors import UsageError
from ..registry import Registry
from ..netmodel import NetworkModel
from .staging import Staging
from .transport import Transport

#: ``--net-emulate``: what the communicator does with the network model's time of a collective
EMULATIONS = ("account", "delay")

BACKENDS: Registry[type["Communicator"]] = Registry("backend")
_HALF = (torch.float16, torch.bfloat16)


class Communicator(ABC):
    name: str = "abstract"

    def __init__(self, rank: int, size: int, net: NetworkModel | None = None,
                 control: ControlChannel | None = None, transport: torch.device = torch.device("cpu"),
                 direct: frozenset[str] = frozenset({"cpu"}), emulate: str = "account"):
        if emulate not in EMULATIONS:
            raise UsageError(f"network emulation must be one of {', '.join(EMULATIONS)}; got '{emulate}'")
        self.rank, self.size = rank, size
        self.control = control
        self.direct = direct  # device types the transport takes as they are; others are staged
        self._staging_device = transport
        self._staging = {}  # per thread: the compute thread's and the worker's buffers never mix
        self._reused: dict[int, dict] = {}  # per thread: what reused() built
        self.net, self.emulate = net or NetworkModel(), emulate
        self.transport = Transport(f"hpcgan-{self.name}-transport")
        self.bytes_sent = 0
        self.calls = 0
        self.t_net_emulated = 0.0
        self.worker_comm_cpu = 0.0  # CPU seconds the worker spent inside collectives (spinning, not work)
        self._lock = threading.Lock()
        self._checked: set[tuple] = set()  # payload signatures whose sizes every rank agreed on

    @classmethod
    def from_config(cls, cfg: CommConfig, comm=None) -> "Communicator":
        """This backend over ``comm`` (an mpi4py communicator; default COMM_WORLD) for ``cfg``."""
        if cfg.cuda_aware_mpi == "yes":
            raise UsageError(f"--cuda-aware-mpi yes applies to --backend mpi, not '{cls.name}'")
        return cls(comm, NetworkModel(cfg.net_latency, cfg.net_bandwidth), emulate=cfg.net_emulate)

    @property
    def staging(self) -> Staging:
        """This thread's reused staging buffers."""
        key = threading.get_ident()
        if key not in self._staging:
            self._staging[key] = Staging(self._staging_device)
        return self._staging[key]

    def reused(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """``build()``'s result, made once per thread and ``key`` on this communicator: buffers the
        layer above reuses from one collective to the next (as :attr:`staging` is reused), kept
        as long as the communicator and never shared between the compute thread and the worker."""
        mine = self._reused.get(threading.get_ident())
        if mine is None:
            mine = self._reused[threading.get_ident()] = {}
        value = mine.get(key)
        if value is None:
            value = mine[key] = build()
        return value

    def _count(self, nbytes: int, emulated: float = 0.0) -> None:
        """Record one call handing ``nbytes`` to the transport (nothing leaves a 1-rank job); under
        ``delay``, wait the modelled time here, on the thread that runs the collective."""
        sent = self.size > 1
        with self._lock:
            self.calls += 1
            if sent:
                self.bytes_sent += int(nbytes)
                self.t_net_emulated += emulated if self.emulate == "account" else 0.0
        if sent and self.emulate == "delay" and emulated > 0:
            time.sleep(emulated)

    def _enter(self) -> Callable[[], None]:
        """Start of a public collective: on the compute thread, wait for every submitted program
        first (collectives never overtake each other); returns what to call at its end (on the
        worker: add the CPU time the collective took to ``worker_comm_cpu``)."""
        if not self.transport.on_worker():
            self.transport.drain()
            return _nothing
        c0 = time.thread_time()

        def leave() -> None:
            with self._lock:
                self.worker_comm_cpu += time.thread_time() - c0
        return leave

    # -- non-blocking -----------------------------------------------------------------------------
    def submit(self, program: Callable[[], Any]) -> torch.futures.Future:
        """Run ``program`` (which calls this communicator's primitives) on the transport worker,
        after every program submitted before it; returns its future (the non-blocking handle)."""
        return self.transport.submit(program)

    def drain(self) -> None:
        """Wait for every submitted program."""
        self.transport.drain()

    def iallreduce_(self, t: torch.Tensor, average: bool = True) -> torch.futures.Future:
        """Non-blocking :meth:`allreduce_`; ``t`` must not be touched until the future completes."""
        return self.submit(lambda: self.allreduce_(t, average))

    def iallgather(self, t: torch.Tensor, counts: list[int] | None = None) -> torch.futures.Future:
        """Non-blocking :meth:`allgather`."""
        return self.submit(lambda: self.allgather(t, counts))

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
        return ("cpu" if t.is_cpu else t.device.type) in self.direct and t.is_contiguous()

    def _stage(self, t: torch.Tensor, slot: str = "send") -> torch.Tensor:
        """A copy of ``t`` in the reused staging buffer ``slot`` (1-D, on the transport's device)."""
        buf = self.staging.buffer(slot, t.dtype, t.numel())
        buf.view(t.shape).copy_(t)
        return buf

    def _in_place(self, primitive, t: torch.Tensor, *args) -> torch.Tensor:
        """Run the in-place ``primitive`` on ``t``, staged there and back if the transport does not
        take ``t`` as it is; returns ``t``."""
        if self._takes(t):
            primitive(t if t.dim() == 1 else t.view(-1), *args)
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
        return list(self._gather_into(t, counts).split(counts))

    def _gather_into(self, t: torch.Tensor, counts: list[int], out: torch.Tensor | None = None) -> torch.Tensor:
        """Every rank's 1-D ``t``, in rank order, in ``out`` (contiguous, like ``t``) or a new 1-D tensor."""
        if out is None:
            out = torch.empty(sum(counts), dtype=t.dtype, device=t.device)
        if self._takes(t) and out.is_contiguous():
            self._allgather(t, out, counts)
        else:
            staged = self.staging.buffer("recv", t.dtype, out.numel())
            self._allgather(self._stage(t), staged, counts)
            out.copy_(staged)
        return out

    # -- public collectives ---------------------------------------------------------------------
    def allreduce_(self, t: torch.Tensor, average: bool = True) -> torch.Tensor:
        """In-place sum (or mean) of ``t`` over all ranks; returns ``t``."""
        leave = self._enter()
        nbytes = t.nbytes
        self._count(nbytes, self.net.allreduce(nbytes, self.size))
        self._in_place(self._allreduce_half if t.dtype in _HALF else self._allreduce, t)
        leave()
        if average and self.size > 1:
            t.div_(self.size)
        return t

    def allgather(self, t: torch.Tensor, counts: list[int] | None = None) -> list[torch.Tensor]:
        """Every rank's 1-D tensor, in rank order (lengths may differ between ranks; pass them as
        ``counts`` if known, to skip the exchange of lengths)."""
        leave = self._enter()
        flat = t.reshape(-1)
        nbytes = flat.numel() * flat.element_size()
        self._count(nbytes, self.net.allgather(nbytes, self.size))
        out = self._gather(flat, counts)
        leave()
        return out

    def allgather_rows(self, t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Every rank's ``t``, flattened, as the rows of one (size, numel) tensor, row r from rank r:
        ``out`` if given (contiguous, size x numel elements of any shape, reused by the caller; a
        1-D one saves a view per call), else a new one. Every rank must pass the same number of
        elements (compressed payloads: their sizes were checked once, :meth:`check_same_size_once`);
        one collective, one buffer, no lists."""
        leave = self._enter()
        flat = t if t.dim() == 1 else t.reshape(-1)
        nbytes = flat.nbytes
        self._count(nbytes, self.net.allgather(nbytes, self.size))
        rows = self._gather_into(flat, [flat.numel()] * self.size,
                                 None if out is None else out if out.dim() == 1 else out.view(-1))
        leave()
        return rows.view(self.size, -1) if out is None else out

    def broadcast_(self, t: torch.Tensor, root: int = 0) -> torch.Tensor:
        """In-place copy of ``t`` from ``root`` to every rank; returns ``t``."""
        leave = self._enter()
        nbytes = t.numel() * t.element_size()
        self._count(nbytes if self.rank == root else 0, self.net.broadcast(nbytes, self.size))
        self._in_place(self._broadcast, t, root)
        leave()
        return t

    def check_same_size(self, n: int, what: str = "payload") -> None:
        """Raise UsageError on every rank unless every rank passes the same ``n`` (control message)."""
        self._enter()
        sizes = [int(s) for s in self._gather(torch.tensor([n], dtype=torch.int64), [1] * self.size)]
        if len(set(sizes)) > 1:
            raise UsageError(f"ranks disagree on the {what} size: {sizes} (rank order); "
                             "every rank must communicate tensors of the same shapes")

    def check_same_size_once(self, signature: tuple, n: int, what: str = "payload") -> None:
        """:meth:`check_same_size` the first time ``signature`` is seen on this communicator; later
        calls with it cost nothing (a payload's size depends only on its signature). Whether it
        was seen is asked after every submitted program has run, so all ranks agree on it."""
        self._enter()
        if signature not in self._checked:
            self.check_same_size(n, what)
            self._checked.add(signature)

    def neighbor_mix(self, x: torch.Tensor, plan) -> torch.Tensor:
        """One gossip round (DPOSG): self_weight x + sum_k weights[k] x^{sources[k]} for a
        :class:`~hpcgan.comm.topology.GossipPlan`, sending x to every rank in ``plan.destinations``;
        counts the bytes of x times the out-degree. Collective over all ranks of the communicator."""
        leave = self._enter()
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
        leave()
        out = x * plan.self_weight
        for w, r in zip(plan.weights, recv):
            out.add_(r, alpha=w)
        return out


def _nothing() -> None:
    pass
