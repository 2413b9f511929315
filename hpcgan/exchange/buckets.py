"""Gradient buckets exchanged while backward goes on (what DDP's reducer and Horovod's fusion do).

A :class:`Bucket` is a contiguous slice of a flat gradient buffer (:class:`~hpcgan.gan.flat.FlatParams`)
holding whole parameter tensors. :func:`plan_buckets` lays them out in the order backward makes
gradients ready -- networks in the order they are differentiated, each from its last parameter to
its first -- packing tensors up to ``--bucket-mb`` (a tensor larger than that is a bucket of its
own). ``--bucket-mb 0`` is one bucket holding everything: one exchange after the whole backward.
For a GAN, flat order (G, D) and ready order (D, G) (``--backward-order dg``, the default) make the
ready order the flat buffer walked backwards, so a bucket may hold D's first tensors and G's last:
a model under the cap is one bucket, as in DDP. With ``gd`` no bucket holds tensors of both.

:class:`BucketedExchange` runs them, per step:

1. ``arm()`` before the backward pass;
2. a hook on every parameter copies its gradient into the flat buffer and counts its bucket down;
   a bucket whose gradients are all in has its message (``message(bucket, gradients)``) started
   (:meth:`Exchange.start`: compressed on this thread, sent by the transport worker), buckets
   always in plan order, so every rank issues the same collectives in the same order whatever
   order its hooks fire in; the last bucket is left for step 3, since nothing would run behind it;
3. ``wait()`` after backward: starts what is left, waits for every bucket (that wait is the step's
   exposed communication, "comm"), runs the last bucket on this thread, and writes each bucket's
   Delta into its slice of ``out``. The worker's busy time beyond the wait is the communication
   hidden behind compute (``PhaseTimer.hidden``).

With one bucket there are no hooks at all: the caller fills the flat buffer and ``wait()`` runs the
one exchange on its own thread, as before buckets existed. The bytes on the wire do not depend on
the buckets for per-tensor compressor scales (each tensor is compressed alike); with one scale per
network or per block the buckets are whole networks, so the scales are the same too.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..gan.flat import FlatParams
from ..results.timer import PhaseTimer
from .exchange import Exchange

MIB = 2 ** 20


@dataclass(frozen=True)
class Bucket:
    name: str
    start: int                 # slice [start, stop) of the flat buffer
    stop: int
    sizes: tuple[int, ...]     # the compressor's scale groups within it, in flat order
    params: tuple[int, ...]    # indices into FlatParams.param_list

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


def plan_buckets(flat: FlatParams, ready_order: Sequence[str], cap_bytes: int,
                 groups: Callable[[list[int]], list[int]] | None = None) -> tuple[Bucket, ...]:
    """Buckets of ``flat`` in the order backward makes them ready (see the module doc).

    The units packed are parameter tensors, or whole networks when ``groups`` maps a network's
    tensor lengths to the compressor's scale groups (one scale per network or per block: a bucket
    must not cut a scale group). Units are taken in ready order -- networks in ``ready_order``,
    each from its last tensor to its first -- and added to the current bucket while they are next
    to it in the flat buffer and it stays within ``cap_bytes`` (0: no limit, one bucket); a unit
    larger than the cap is a bucket of its own."""
    if sorted(ready_order) != sorted(flat.names):
        raise ValueError(f"ready order {list(ready_order)} must name each of {flat.names} once")
    starts = flat.starts
    units: list[tuple[list[int], list[int]]] = []  # (parameter indices, scale groups), in ready order
    for name in ready_order:
        if groups is None:
            units += [([i], [flat.sizes[i]]) for i in reversed(flat.indices[name])]
        else:
            units.append((list(flat.indices[name]), groups([flat.sizes[i] for i in flat.indices[name]])))
    if cap_bytes <= 0:  # one bucket, the whole buffer, in whatever order backward fills it
        units.sort(key=lambda u: -max(u[0]))
    packed: list[list[tuple[list[int], list[int]]]] = []
    for unit in units:
        current = packed[-1] if packed else None
        fits = current is not None and (cap_bytes <= 0 or 4 * sum(
            flat.sizes[i] for u in current + [unit] for i in u[0]) <= cap_bytes)
        if fits and min(current[-1][0]) == max(unit[0]) + 1:  # unit ends where the bucket begins
            current.append(unit)
        else:
            packed.append([unit])
    out = []
    for k, bucket in enumerate(packed):
        bucket = bucket[::-1]  # flat order
        params = [i for u in bucket for i in u[0]]
        out.append(Bucket(f"bucket{k}", starts[params[0]], starts[params[-1] + 1],
                          tuple(g for u in bucket for g in u[1]), tuple(params)))
    return tuple(out)


class BucketedExchange:
    def __init__(self, flat: FlatParams, exchange: Exchange, buckets: Sequence[Bucket],
                 message: Callable[[Bucket, torch.Tensor], torch.Tensor], out: torch.Tensor,
                 timer: PhaseTimer):
        self.flat, self.exchange, self.buckets = flat, exchange, tuple(buckets)
        self.message, self.out, self.timer = message, out, timer
        self.bucket_of = {i: k for k, b in enumerate(self.buckets) for i in b.params}
        self._handles = []
        if self.hooked:
            for i, p in enumerate(flat.param_list):
                self._handles.append(p.register_hook(self._hook(i, flat.starts[i], flat.starts[i + 1])))
        self.armed = False
        self._missing: list[int] = []
        self._next = 0
        self._futures: list[tuple[Bucket, torch.futures.Future]] = []
        self._busy0 = self._cpu0 = self._armed_at = 0.0
        #: seconds from arm() to the first bucket's start in the last step (NaN: none started early):
        #: no communication can hide behind the compute before it
        self.first_start = float("nan")
        #: the last step's timeline, in seconds from arm() (NaN where unknown; hooked exchanges only):
        #: when each parameter's gradient arrived, when each bucket was complete, and when
        #: backward ended (wait() was called) -- what bounds the overlap any bucket plan can reach
        self.grad_at = [float("nan")] * len(flat.param_list)
        self.ready_at = [float("nan")] * len(self.buckets)
        self.backward_end = float("nan")

    @property
    def hooked(self) -> bool:
        """Whether gradient hooks fill the flat buffer and start buckets during backward (more than
        one bucket); else the caller fills the buffer before :meth:`wait`."""
        return len(self.buckets) > 1

    def arm(self) -> None:
        """Step 1: the next backward pass's gradients belong to a new step."""
        self._missing = [len(b.params) for b in self.buckets]
        self._next, self._futures, self.armed = 0, [], True
        self._busy0, self._cpu0 = self.exchange.comm.transport.busy, self.exchange.comm.worker_comm_cpu
        nan = float("nan")
        self.grad_at, self.ready_at = [nan] * len(self.grad_at), [nan] * len(self.buckets)
        self.first_start = self.backward_end = nan
        self._armed_at = time.perf_counter()

    def _hook(self, i: int, start: int, stop: int):
        def hook(grad: torch.Tensor) -> None:
            if not self.armed:
                return
            k = self.bucket_of[i]
            if self._missing[k] <= 0:
                raise RuntimeError(f"gradient of parameter {i} arrived twice in one step (bucket {k})")
            self.flat.grads[start:stop].copy_(grad.reshape(-1))
            self._missing[k] -= 1
            self.grad_at[i] = time.perf_counter() - self._armed_at
            if self._missing[k] == 0:
                self.ready_at[k] = self.grad_at[i]
                self._start_ready()
        return hook

    def _start_ready(self) -> None:
        """Step 2: start every complete bucket whose predecessors have started, but not the last."""
        while self._next < len(self.buckets) - 1 and self._missing[self._next] == 0:
            self._start(self.buckets[self._next])
            self._next += 1

    def _start(self, b: Bucket) -> None:
        if not self._futures:
            self.first_start = time.perf_counter() - self._armed_at
        x = self.message(b, self.flat.grads[b.slice])
        self._futures.append((b, self.exchange.start(b.name, x, b.sizes)))

    def wait(self) -> torch.Tensor:
        """Step 3: every bucket's Delta in ``out``; returns ``out``."""
        self.armed = False
        self.backward_end = time.perf_counter() - self._armed_at
        if self.hooked and any(self._missing):
            missing = [b.name for b, m in zip(self.buckets, self._missing) if m]
            raise RuntimeError(f"backward produced no gradient for some parameters of {missing}")
        while self._next < len(self.buckets) - 1:
            self._start(self.buckets[self._next])
            self._next += 1
        t0 = time.perf_counter()
        with self.timer("comm"):
            deltas = [(b, fut.wait()) for b, fut in self._futures]
        waited = time.perf_counter() - t0
        comm = self.exchange.comm
        self.timer.hidden(comm.transport.busy - self._busy0 - waited)
        self.timer.not_work(comm.worker_comm_cpu - self._cpu0)
        for b, delta in deltas:
            self._write(b, delta)
        last = self.buckets[-1]
        self._write(last, self.exchange.run(last.name, self.message(last, self.flat.grads[last.slice]), last.sizes))
        self._futures = []
        return self.out

    def _write(self, b: Bucket, delta: torch.Tensor) -> None:
        dst = self.out[b.slice]
        if delta.data_ptr() != dst.data_ptr():
            dst.copy_(delta.view(-1))

    def residual(self) -> torch.Tensor:
        """This rank's error-feedback residual e over the whole flat buffer (zero where none yet)."""
        out = torch.zeros_like(self.out)
        for b in self.buckets:
            e = self.exchange.memory.residuals.get(b.name)
            if e is not None:
                out[b.slice] = e.view(-1)
        return out

    def state_dict(self) -> dict:
        return self.exchange.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.exchange.load_state_dict(state)

    def close(self) -> None:
        """Remove the gradient hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []
