"""Quality evaluation, collective over ranks: each rank draws and scores its share of the samples.

``build_evaluator(dataset)`` picks the metrics that fit the dataset. An evaluator is called on every
rank with a sampling function ``sample(n) -> (x, y)`` returning this rank's share, and returns the
global metrics (identical on every rank). Its reductions go through the uncounted control channel
(:class:`~hpcgan.comm.control.ControlChannel`) over the MPI communicator given, never through the
training communicator, so they add nothing to ``bytes_sent``, and they never hand a tensor to MPI
themselves (sums are host-staged by the channel, whatever device the samples came from).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch

from ..comm.control import ControlChannel, control_of
from ..data import Dataset, GaussianMixture
from . import mog
from .stats import IS_SPLITS

SampleFn = Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]


def share(n_total: int, rank: int, size: int) -> int:
    """This rank's part of n_total samples (the first n_total % size ranks take one more)."""
    return n_total // size + (1 if rank < n_total % size else 0)


def offset(n_total: int, rank: int, size: int) -> int:
    """Global index of this rank's first sample: the shares of the ranks before it."""
    return rank * (n_total // size) + min(rank, n_total % size)


class Evaluator(ABC):
    #: splits of the Inception scores it reports (0: none)
    is_splits: int = 0

    def describe(self) -> dict[str, str]:
        """What the numbers depend on besides the samples (weights digests, IS splits)."""
        return {}

    @abstractmethod
    def evaluate(self, sample: SampleFn, n_total: int, comm: ControlChannel) -> dict[str, float]:
        """Global metrics of ``n_total`` samples; collective over ``comm``."""


class MixtureEvaluator(Evaluator):
    def __init__(self, mixture: GaussianMixture):
        self.mixture = mixture

    @torch.no_grad()
    def evaluate(self, sample: SampleFn, n_total: int, comm: ControlChannel) -> dict[str, float]:
        comm = control_of(comm)
        x, _ = sample(share(n_total, comm.rank, comm.size))
        counts = mog.mode_counts(x, self.mixture.centers, self.mixture.sigma)
        comm.allreduce_(counts)  # sums counts in place
        return mog.mixture_metrics(counts)


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
