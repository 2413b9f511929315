"""Image quality, collective over ranks: each rank generates and embeds its share of the samples.

For each extractor (the standard Inception-v3 and/or the proxy classifier), every rank accumulates
:class:`FeatureStats` and :class:`ClassStats` of its own samples; one allreduce each over the
control channel makes them global, so ``fid``/``is`` equal a single-process computation on the same
samples. FID is measured against the cached statistics of every real image of the dataset. IS is the
mean over ``is_splits`` contiguous splits of the samples in their global order (rank 0's first), with
``is_std`` their standard deviation (:func:`~hpcgan.metrics.stats.inception_score`; 10 splits by
default, as papers report). Class consistency (proxy only: its classes are the dataset's) is the
fraction of conditional samples G(z, c) classified as c. Progress is logged by time
(:class:`~hpcgan.log.Progress`).
"""
from __future__ import annotations

import numpy as np
import torch

from ..comm.control import ControlChannel, control_of
from ..log import Progress
from . import Evaluator, SampleFn, offset, share
from .features import Extractor
from .reference import reference_stats
from .stats import IS_SPLITS, ClassStats, FeatureStats, fid, inception_score, split_of

FID = "fid"
IS = "is"
IS_STD = "is_std"
CLASS_CONSISTENCY = "class_consistency"


class ImageEvaluator(Evaluator):
    def __init__(self, dataset, extractors: list[Extractor], chunk: int = 500, is_splits: int = IS_SPLITS):
        self.dataset, self.extractors, self.chunk, self.is_splits = dataset, extractors, chunk, is_splits
        self._reference: dict[str, FeatureStats] = {}

    def describe(self) -> dict[str, str]:
        return {"is_splits": str(self.is_splits), **{e.prefix + "weights_sha256": e.digest for e in self.extractors}}

    def reference(self, extractor: Extractor, comm: ControlChannel) -> FeatureStats:
        if extractor.digest not in self._reference:
            self._reference[extractor.digest] = reference_stats(self.dataset, extractor, comm)
        return self._reference[extractor.digest]

    @torch.no_grad()
    def evaluate(self, sample: SampleFn, n_total: int, comm: ControlChannel) -> dict[str, float]:
        comm = control_of(comm)
        splits = min(self.is_splits, n_total)
        refs = [self.reference(e, comm) for e in self.extractors]
        feats = [FeatureStats.empty(e.dim) for e in self.extractors]
        classes = [[ClassStats.empty(e.num_classes) for _ in range(splits)] for e in self.extractors]
        hits = np.zeros(len(self.extractors) + 1)  # per extractor, then the conditional count
        mine, at = share(n_total, comm.rank, comm.size), offset(n_total, comm.rank, comm.size)
        rounds = -(-share(n_total, 0, comm.size) // self.chunk)  # the same on every rank: samplers may be collective
        progress = Progress("evaluating", n_total, "samples")
        asked = got = 0
        for _ in range(rounds):
            x, y = sample(min(self.chunk, mine - asked))
            asked = min(mine, asked + self.chunk)
            part = split_of(np.arange(at + got, at + got + x.shape[0]), splits)
            got += x.shape[0]
            progress.update(asked * comm.size)  # rank 0's count stands for all ranks
            if x.shape[0] == 0:
                continue
            for i, e in enumerate(self.extractors):
                f, logits = e.embed(x)
                feats[i].add(f)
                for s in np.unique(part):
                    classes[i][s].add(logits[torch.from_numpy(part == s)])
                if y is not None:
                    hits[i] += float((logits.argmax(dim=1) == y.cpu()).sum())
            if y is not None:
                hits[-1] += x.shape[0]
        progress.close()
        comm.allreduce_(hits)  # in place
        out: dict[str, float] = {}
        for e, ref, fs, cs, h in zip(self.extractors, refs, feats, classes, hits):
            out[e.prefix + FID] = fid(fs.allreduce(comm), ref)
            out[e.prefix + IS], out[e.prefix + IS_STD] = inception_score([c.allreduce(comm) for c in cs])
            if hits[-1] > 0 and e.dataset_classes:
                out[e.prefix + CLASS_CONSISTENCY] = float(h / hits[-1])
        return out
