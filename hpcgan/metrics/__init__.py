"""Quality evaluation, collective over ranks: each rank draws and scores its share of the samples.

``build_evaluator(dataset)`` picks the metrics that fit the dataset. An evaluator is called on every
rank with a sampling function ``sample(n) -> (x, y)`` returning this rank's share, and returns the
global metrics (identical on every rank). Its reductions use the MPI communicator given, never the
training communicator, so they add nothing to ``bytes_sent``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np
import torch
from mpi4py import MPI

from ..data import Dataset, GaussianMixture
from . import mog

SampleFn = Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]


def share(n_total: int, rank: int, size: int) -> int:
    """This rank's part of n_total samples (the first n_total % size ranks take one more)."""
    return n_total // size + (1 if rank < n_total % size else 0)


class Evaluator(ABC):
    @abstractmethod
    def evaluate(self, sample: SampleFn, n_total: int, comm: MPI.Comm) -> dict[str, float]:
        """Global metrics of ``n_total`` samples; collective over ``comm``."""


class MixtureEvaluator(Evaluator):
    def __init__(self, mixture: GaussianMixture):
        self.mixture = mixture

    @torch.no_grad()
    def evaluate(self, sample: SampleFn, n_total: int, comm: MPI.Comm) -> dict[str, float]:
        x, _ = sample(share(n_total, comm.rank, comm.size))
        counts = mog.mode_counts(x, self.mixture.centers, self.mixture.sigma)
        total = np.empty_like(counts)
        comm.Allreduce(counts, total, op=MPI.SUM)
        return mog.mixture_metrics(total)


def build_evaluator(dataset: Dataset) -> Evaluator | None:
    """The evaluator for ``dataset``, or None when it has no metric yet."""
    if isinstance(dataset, GaussianMixture):
        return MixtureEvaluator(dataset)
    return None
