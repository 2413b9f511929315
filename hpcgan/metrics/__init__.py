"""Quality evaluation, collective over ranks: each rank draws and scores its share of the samples.

``build_evaluator(dataset)`` picks the metrics that fit the dataset. An evaluation runs in two
halves, so that ranks that are not in lockstep can evaluate alone and merge later (pcwgan,
:mod:`hpcgan.metrics.deferred`):

1. :meth:`Evaluator.statistics`: this rank's *sums* over the samples it draws (a :class:`Sampler`
   gives their global indices and labels, :mod:`hpcgan.metrics.sampling`): mode counts, feature
   and class-probability sums, per-label sums. Their layout never depends on what was drawn, so
   they add up over ranks and over evaluations of disjoint index sets.
2. :meth:`Evaluator.metrics`: the metrics of sums over all samples; identical on every rank.

:meth:`Evaluator.evaluate` does both with one allreduce between them. Reductions go through the
uncounted control channel (:class:`~hpcgan.comm.control.ControlChannel`) over the MPI communicator
given, never through the training communicator, so they add nothing to ``bytes_sent``, and they
never hand a tensor to MPI themselves (sums are host-staged by the channel, whatever device the
samples came from). Samplers may be collective (DPOSG's averaged model): every rank draws the
same number of times (:func:`draws`).

Per-label quality of conditional samples (labels given): on mixtures, where label c is mode c,
``hq_fraction_label{c}`` (label c's samples within 3 sigma of mode c) and ``labels_covered`` (labels
with at least ``LABEL_COVERED`` of their samples there); on images, per class the proxy
classifier's ``proxy_fid_label{c}`` (against the real images of class c),
``proxy_class_consistency_label{c}`` and ``proxy_labels_covered`` (classes whose samples are
classified as their class at least ``LABEL_COVERED`` of the time).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator

import numpy as np
import torch

from ..comm.control import ControlChannel, control_of
from ..data import Dataset, GaussianMixture
from . import mog
from .sampling import SampleFn, Sampler, as_sampler, offset, share
from .stats import IS_SPLITS, allreduce_arrays

#: additive statistics of an evaluation: float64 sums by name
Stats = dict[str, np.ndarray]
#: a label counts as covered when at least this share of its samples is right (module docstring)
LABEL_COVERED = 0.5
#: samples drawn at a time
CHUNK = 500


def add_stats(a: Stats, b: Stats) -> Stats:
    return {k: a[k] + b[k] for k in a}


def allreduce_stats(stats: Stats, comm: ControlChannel) -> Stats:
    """The sums over every rank of ``comm``: one allreduce of their concatenation (names sorted)."""
    names = sorted(stats)
    return dict(zip(names, allreduce_arrays([stats[k] for k in names], comm)))


def draws(sampler: Sampler, index: np.ndarray, comm: ControlChannel,
          chunk: int = CHUNK) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor | None]]:
    """(indices, samples, labels) of ``index`` in chunks; every rank of ``comm`` draws the same
    number of times (empty chunks included), so collective samplers work."""
    rounds = control_of(comm).allreduce(-(-len(index) // chunk), op="max")
    for k in range(rounds):
        idx = index[k * chunk:(k + 1) * chunk]
        x, y = sampler.draw(idx)
        yield idx, x, y


class Evaluator(ABC):
    #: splits of the Inception scores it reports (0: none)
    is_splits: int = 0

    def describe(self) -> dict[str, str]:
        """What the numbers depend on besides the samples (weights digests, IS splits)."""
        return {}

    @abstractmethod
    def statistics(self, sampler: Sampler, index: np.ndarray, n_total: int, comm: ControlChannel) -> Stats:
        """This rank's sums over the samples with global indices ``index`` of an evaluation of
        ``n_total``; collective over ``comm`` only through :func:`draws`."""

    @abstractmethod
    def metrics(self, stats: Stats, comm: ControlChannel) -> dict[str, float]:
        """The metrics of the sums over all samples (collective: reference statistics may be
        computed on first use)."""

    def evaluate(self, sample: Sampler | SampleFn, n_total: int, comm: ControlChannel) -> dict[str, float]:
        """Global metrics of ``n_total`` samples, each rank drawing its indices; collective over ``comm``."""
        comm, sampler = control_of(comm), as_sampler(sample)
        mine = sampler.indices(n_total, comm.rank, comm.size)
        return self.metrics(allreduce_stats(self.statistics(sampler, mine, n_total, comm), comm), comm)


class MixtureEvaluator(Evaluator):
    def __init__(self, mixture: GaussianMixture):
        self.mixture = mixture

    @torch.no_grad()
    def statistics(self, sampler: Sampler, index: np.ndarray, n_total: int, comm: ControlChannel) -> Stats:
        K = len(self.mixture.centers)
        stats = {"counts": np.zeros(K + 1), "label_n": np.zeros(K), "label_hits": np.zeros(K)}
        for _, x, y in draws(sampler, index, comm):
            if x.shape[0] == 0:
                continue
            stats["counts"] += mog.mode_counts(x, self.mixture.centers, self.mixture.sigma)
            if y is not None:
                n, hits = mog.label_hits(x, y, self.mixture.centers, self.mixture.sigma)
                stats["label_n"] += n
                stats["label_hits"] += hits
        return stats

    def metrics(self, stats: Stats, comm: ControlChannel) -> dict[str, float]:
        out = mog.mixture_metrics(stats["counts"].astype(np.int64))
        n, hits = stats["label_n"], stats["label_hits"]
        if n.sum() > 0:
            seen = np.flatnonzero(n > 0)
            out.update({f"{mog.HQ_FRACTION}_label{c}": float(hits[c] / n[c]) for c in seen})
            out[mog.LABELS_COVERED] = float(np.sum(hits[seen] >= LABEL_COVERED * n[seen]))
        return out


#: metric families ``hpcgan eval --metrics`` accepts
METRIC_FAMILIES = ("mog", "proxy", "inception")


def build_evaluator(dataset: Dataset, metrics: list[str] | None = None, inception_weights: str | None = None,
                    proxy: str | None = None, device: torch.device = torch.device("cpu"), *, data: str,
                    is_splits: int = IS_SPLITS) -> Evaluator | None:
    """The evaluator for ``dataset`` (``--data`` ``data``), or None when it has no metric.

    ``metrics=None`` picks what is available: mixture metrics for mog8/mog25; for image datasets
    the proxy metrics when a trained proxy classifier exists (the log says so when none does) and
    IS/FID when Inception weights are given (flag or $HPCGAN_INCEPTION_WEIGHTS); IS over ``is_splits``
    splits. Families named explicitly must be available, else a UsageError says how to provide them.
    """
    from ..errors import UsageError
    from ..log import get_logger
    from .image import ImageEvaluator
    from .inception import InceptionExtractor, weights_path
    from .proxy import load_proxy
    from .reference import is_image_dataset

    unknown = set(metrics or ()) - set(METRIC_FAMILIES)
    if unknown:
        raise UsageError(f"unknown metrics {sorted(unknown)}; valid: {', '.join(METRIC_FAMILIES)}")
    if isinstance(dataset, GaussianMixture):
        if metrics and set(metrics) != {"mog"}:
            raise UsageError("mixture datasets have only the 'mog' metrics")
        return MixtureEvaluator(dataset)
    if not is_image_dataset(dataset):
        if metrics:
            raise UsageError(f"no metrics {metrics} for this dataset")
        return None
    if metrics and "mog" in metrics:
        raise UsageError("'mog' metrics need a 2-D mixture dataset")
    log, extractors = get_logger(), []
    weights = weights_path(inception_weights)
    if (metrics is None and weights) or (metrics and "inception" in metrics):
        extractors.append(InceptionExtractor(weights, device))
    if metrics is None or "proxy" in metrics:
        try:
            extractors.append(load_proxy(dataset, proxy, device, data=data))
        except UsageError as e:
            if metrics:
                raise
            log.info("no proxy metrics: %s", e)
    if not extractors:
        log.info("no image quality metrics for this run (no proxy classifier, no Inception weights)")
        return None
    return ImageEvaluator(dataset, extractors, is_splits=is_splits)
