"""Exchange: one compressed average over the ranks, built from GRACE's three parts -- a compressor
(:mod:`hpcgan.compress`), a memory (:class:`~hpcgan.compress.feedback.ErrorFeedback`) and a
communicator (:mod:`hpcgan.comm`) -- so that each stays ignorant of the others.

For a buffer x named k (a bucket of gradients, a step to apply) with per-tensor lengths ``sizes``
(one compressor scale per entry), on every rank m:

1. compensate:     p = x + e_k                         (e_k = 0 without error feedback)
2. compress:       (payload, ctx) = Q.compress(p, sizes)
3. update memory:  e_k <- p - Q_m(p)                   (one-round Q: here; multi-round Q: after step 4)
4. send:           one collective per round (:func:`~.wire.collect`): allreduce of summable
                   payloads, allgather of the others
5. decompress:     Delta = (1/M) sum_m Q_m(p_m), identical on every rank

:meth:`Exchange.start` runs steps 1-3 on the calling thread (timed as "compress") and hands steps
4-5 to the communicator's transport worker, returning a future: the caller computes on while the
bytes move. :meth:`Exchange.run` does all five on the calling thread (steps 4-5 timed as "comm" and
"compress"), after whatever was started before it. Exchanges of different names are independent:
each name has its own memory and its own copy of the compressor (its call counter, PowerSGD's warm
start), so a bucket's state never leaks into another's and no state is shared between the compute
thread and the worker. Started exchanges complete in the order they were started, on every rank.
"""
from __future__ import annotations

import copy
from contextlib import AbstractContextManager
from typing import Any, Callable, Sequence

import torch

from ..comm import Communicator
from ..compress import Compressor
from ..compress.feedback import ErrorFeedback
from .wire import Phase, collect, untimed


class Exchange:
    def __init__(self, comm: Communicator, compressor: Compressor, error_feedback: bool = True,
                 timer: Callable[[str], AbstractContextManager] | None = None):
        self.comm, self.compressor = comm, compressor  # the prototype of every name's compressor
        self.memory = ErrorFeedback(error_feedback)
        self.phase: Phase = timer or untimed
        self.compressors: dict[str, Compressor] = {}

    def compressor_of(self, name: str) -> Compressor:
        """Buffer ``name``'s own compressor (a copy of the prototype, made on first use)."""
        if name not in self.compressors:
            self.compressors[name] = copy.deepcopy(self.compressor)
        return self.compressors[name]

    def _compress(self, name: str, x: torch.Tensor, sizes: Sequence[int]):
        """Steps 1-3 (step 3 only for one-round compressors)."""
        q = self.compressor_of(name)
        with self.phase("compress"):
            p = self.memory.compensate(name, x)
            payload, ctx = q.compress(p, sizes)
            if q.rounds == 1:
                self.memory.update(name, p, q.local(payload, ctx))
        return p, payload, ctx

    def _send(self, name: str, p, payload, ctx, phase: Phase) -> torch.Tensor:
        """Steps 4-5, and step 3 of a multi-round compressor once its rounds have run."""
        q = self.compressor_of(name)
        delta = collect(self.comm, q, payload, ctx, phase)
        if q.rounds > 1:
            with phase("compress"):
                self.memory.update(name, p, q.local(payload, ctx))
        return delta

    def start(self, name: str, x: torch.Tensor, sizes: Sequence[int]) -> torch.futures.Future:
        """Steps 1-3 here, 4-5 on the transport worker; the future's value is Delta. ``x`` may be
        summed in place (sync hands its gradients over), so leave it alone until then."""
        p, payload, ctx = self._compress(name, x, sizes)
        if not x.is_cuda:
            return self.comm.submit(lambda: self._send(name, p, payload, ctx, untimed))
        # The worker reads the payload outside this thread's stream order: it waits for an event
        # recorded here, so the compute thread queues its next kernels instead of waiting too.
        ready = torch.cuda.Event()
        ready.record(torch.cuda.current_stream(x.device))

        def send() -> torch.Tensor:
            ready.synchronize()
            return self._send(name, p, payload, ctx, untimed)
        return self.comm.submit(send)

    def run(self, name: str, x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
        """All five steps on the calling thread (blocking); Delta."""
        p, payload, ctx = self._compress(name, x, sizes)
        return self._send(name, p, payload, ctx, self.phase)

    def state_dict(self) -> dict[str, Any]:
        """Residuals and per-name compressor state (checkpointed with the algorithm)."""
        return {"memory": self.memory.state_dict(),
                "compressors": {k: q.state_dict() for k, q in self.compressors.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        for name, sub in state["compressors"].items():
            self.compressor_of(name).load_state_dict(sub)
