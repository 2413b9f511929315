"""Transport: the communication path of one communicator, a worker thread that runs its collectives
in the order they were submitted, while the submitting (compute) thread goes on.

This is what makes a collective non-blocking on every backend, the way Horovod's background thread
and NCCL's stream do: :meth:`submit` queues a *program* (a function that calls the communicator's
blocking primitives, one or several rounds, and any local work between them) and returns a
``torch.futures.Future`` at once; the worker runs the programs one after the other and completes
each future with the program's result (or its exception). Because every rank submits the same
programs in the same order and the worker runs them in that order, the collectives inside them
match across ranks, multi-round programs included (PowerSGD's second round is built from its
first round's sum inside the same program, so no other bucket's collective can come between them).

A blocking collective called on the compute thread first waits for everything already submitted
(:meth:`drain`), then runs right there: collectives never overtake each other, and a job that never
submits anything never starts the thread. Called on the worker thread (inside a program), a
primitive runs at once.

Invariants: one worker per communicator, started on first use, a daemon (a job that ends while a
program is queued does not hang in the interpreter's exit); ``busy`` counts the wall seconds the
worker spent running programs, so a step can say how much of its communication ran behind its
compute.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable

import torch


class Transport:
    def __init__(self, name: str = "hpcgan-transport"):
        self.name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pending: list[torch.futures.Future] = []
        self.busy = 0.0   # wall seconds spent running programs
        self._lock = threading.Lock()

    def on_worker(self) -> bool:
        """Whether the calling thread is this transport's worker."""
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, program: Callable[[], Any]) -> torch.futures.Future:
        """Queue ``program`` behind every program submitted before; its future completes with its
        result. On the worker itself (a program submitting another), it runs at once."""
        fut: torch.futures.Future = torch.futures.Future()
        if self.on_worker():
            fut.set_result(program())
            return fut
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
        self._pending.append(fut)
        self._queue.put((program, fut))
        return fut

    def drain(self) -> None:
        """Wait until every submitted program has run; re-raises the first one's exception."""
        pending, self._pending = self._pending, []
        for fut in pending:
            fut.wait()

    def _work(self) -> None:
        while True:
            program, fut = self._queue.get()
            t0 = time.perf_counter()
            try:
                result, error = program(), None
            except BaseException as e:  # noqa: BLE001  (handed to whoever waits for the future)
                result, error = None, e
            with self._lock:
                self.busy += time.perf_counter() - t0
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)
