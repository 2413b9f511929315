"""What an evaluation draws: which samples, with which labels, on which rank.

An evaluation of ``n_total`` samples numbers them 0..n_total-1, the *global order*. Invariants,
the same for evaluations during training and ``hpcgan eval`` of any conditional or per-label model:

1. Sample i is conditioned on label :func:`eval_labels` (i): the quantile of u_i = frac(i * g),
   g = (sqrt 5 - 1)/2, in the cumulative label proportions of the data (:func:`label_proportions`).
   The u_i are a low-discrepancy sequence, so labels come interleaved and each label's count over
   any prefix of n samples is within a few samples of n * p_c, for every n (no block per label).
2. Sample i belongs to IS split i mod S (:func:`~hpcgan.metrics.stats.split_of`): every split holds
   every label in about its data proportion.
3. A :class:`Sampler` says which global indices a rank draws (:meth:`Sampler.indices`; by default
   its contiguous share) and draws the samples at given indices (:meth:`Sampler.draw`). The ranks'
   index sets partition 0..n_total-1, so statistics summed over ranks are those of all n_total
   samples, whichever rank drew which: a per-label model (pcwgan) gives each rank the indices of
   the labels it holds, a model every rank holds gives contiguous shares.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

#: the golden-ratio step of the label sequence
GOLDEN = (math.sqrt(5) - 1) / 2

SampleFn = Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]


def share(n_total: int, rank: int, size: int) -> int:
    """This rank's part of n_total samples (the first n_total % size ranks take one more)."""
    return n_total // size + (1 if rank < n_total % size else 0)


def offset(n_total: int, rank: int, size: int) -> int:
    """Global index of this rank's first sample: the shares of the ranks before it."""
    return rank * (n_total // size) + min(rank, n_total % size)


def label_proportions(dataset) -> np.ndarray:
    """p_c, the share of label c among the samples the dataset draws from (mixtures: equal weights)."""
    C = dataset.spec.num_classes
    by_label = getattr(dataset, "by_label", None)
    if by_label is None:
        return np.full(C, 1.0 / C)
    counts = np.array([len(by_label.get(c, ())) for c in range(C)], dtype=np.float64)
    return counts / counts.sum()


def eval_labels(index: np.ndarray, proportions: np.ndarray) -> np.ndarray:
    """The label of each global sample index (invariant 1 of the module docstring)."""
    u = np.mod(np.asarray(index, dtype=np.float64) * GOLDEN, 1.0)
    edges = np.cumsum(proportions)
    return np.minimum(np.searchsorted(edges, u, side="right"), len(proportions) - 1).astype(np.int64)


class Sampler:
    """This rank's part of an evaluation (invariant 3). Subclasses implement :meth:`draw` and, for
    another partition than contiguous shares, :meth:`indices`."""

    def indices(self, n_total: int, rank: int, size: int) -> np.ndarray:
        start = offset(n_total, rank, size)
        return np.arange(start, start + share(n_total, rank, size), dtype=np.int64)

    def draw(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The samples with global indices ``index`` and their labels (None: unconditional)."""
        raise NotImplementedError


class FnSampler(Sampler):
    """A plain ``sample(n)`` function (the next n samples of this rank) as a :class:`Sampler` with
    contiguous shares: unconditional models and real data, whose samples carry no chosen label."""

    def __init__(self, fn: SampleFn):
        self.fn = fn

    def draw(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.fn(len(index))


class LabelSampler(Sampler):
    """A conditional model: ``generate(labels)`` draws one sample per label; sample i gets label
    :func:`eval_labels` (i). ``own``: the labels this rank holds (None: all), which also chooses
    the partition -- the indices of its labels instead of a contiguous share."""

    def __init__(self, generate: Callable[[torch.Tensor], torch.Tensor], proportions: np.ndarray,
                 own: set[int] | None = None):
        self.generate, self.proportions, self.own = generate, proportions, own

    def indices(self, n_total: int, rank: int, size: int) -> np.ndarray:
        if self.own is None:
            return super().indices(n_total, rank, size)
        every = np.arange(n_total, dtype=np.int64)
        return every[np.isin(eval_labels(every, self.proportions), sorted(self.own))]

    def draw(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.from_numpy(eval_labels(index, self.proportions))
        return self.generate(labels), labels


def as_sampler(sample: Sampler | SampleFn) -> Sampler:
    return sample if isinstance(sample, Sampler) else FnSampler(sample)
