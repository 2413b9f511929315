"""Image quality, collective over ranks: each rank generates and embeds its share of the samples.

For each extractor (the standard Inception-v3 and/or the proxy classifier), every rank accumulates
:class:`FeatureStats` and :class:`ClassStats` of its own samples; one allreduce each over the
control channel makes them global, so ``fid``/``is`` equal a single-process computation on the same
samples. FID is measured against the cached statistics of every real image of the dataset. Class consistency (proxy only:
its classes are the dataset's) is the fraction of conditional samples G(z, c) classified as c.
"""
from __future__ import annotations

import numpy as np
import torch
from mpi4py import MPI

from ..comm.control import ControlChannel
from . import Evaluator, SampleFn, share
from .features import Extractor
from .reference import reference_stats
from .stats import ClassStats, FeatureStats, fid

FID = "fid"
IS = "is"
CLASS_CONSISTENCY = "class_consistency"


class ImageEvaluator(Evaluator):
    def __init__(self, dataset, extractors: list[Extractor], chunk: int = 500):
        self.dataset, self.extractors, self.chunk = dataset, extractors, chunk
        self._reference: dict[str, FeatureStats] = {}

    def reference(self, extractor: Extractor, comm: MPI.Comm) -> FeatureStats:
        if extractor.digest not in self._reference:
            self._reference[extractor.digest] = reference_stats(self.dataset, extractor, comm)
        return self._reference[extractor.digest]

    @torch.no_grad()
    def evaluate(self, sample: SampleFn, n_total: int, comm: MPI.Comm) -> dict[str, float]:
        refs = [self.reference(e, comm) for e in self.extractors]
        feats = [FeatureStats.empty(e.dim) for e in self.extractors]
        classes = [ClassStats.empty(e.num_classes) for e in self.extractors]
        hits = np.zeros(len(self.extractors) + 1)  # per extractor, then the conditional count
        left = share(n_total, comm.rank, comm.size)
        while left > 0:
            x, y = sample(min(self.chunk, left))
            left -= x.shape[0]
            for i, e in enumerate(self.extractors):
                f, logits = e.embed(x)
                feats[i].add(f)
                classes[i].add(logits)
                if y is not None:
                    hits[i] += float((logits.argmax(dim=1) == y.cpu()).sum())
            if y is not None:
                hits[-1] += x.shape[0]
        ControlChannel(comm).allreduce_(torch.from_numpy(hits))  # in place
        out: dict[str, float] = {}
        for e, ref, fs, cs, h in zip(self.extractors, refs, feats, classes, hits):
            out[e.prefix + FID] = fid(fs.allreduce(comm), ref)
            out[e.prefix + IS] = cs.allreduce(comm).inception_score()
            if hits[-1] > 0 and e.dataset_classes:
                out[e.prefix + CLASS_CONSISTENCY] = float(h / hits[-1])
        return out
