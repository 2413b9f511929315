"""Image quality, collective over ranks: each rank generates and embeds its share of the samples.

For each extractor (the standard Inception-v3 and/or the proxy classifier), every rank accumulates
:class:`FeatureStats` and :class:`ClassStats` of its own samples; one allreduce each over the
control channel makes them global, so ``fid``/``is`` equal a single-process computation on the same
samples. FID is measured against the cached statistics of every real image of the dataset. IS is the
mean over ``is_splits`` contiguous splits of the samples in their global order (rank 0's first), with
``is_std`` their standard deviation (:func:`~hpcgan.metrics.stats.inception_score`; 10 splits by
default, as papers report). Class consistency (proxy only: its classes are the dataset's) is the
fraction of conditional samples G(z, c) classified as c. Per class c (proxy only, conditional
samples): the FID of the samples of label c against the real images of class c
(:func:`~hpcgan.metrics.reference.class_reference_stats`) and their class consistency. Every
statistic is a sum (:meth:`ImageEvaluator.statistics`), so ranks may also score disjoint samples
alone and merge later. Progress is logged by time (:class:`~hpcgan.log.Progress`).
"""
from __future__ import annotations

import numpy as np
import torch

from ..comm.control import ControlChannel, control_of
from ..log import Progress
from . import LABEL_COVERED, Evaluator, Sampler, Stats, draws
from .features import Extractor
from .reference import class_reference_stats, reference_stats
from .stats import IS_SPLITS, ClassStats, FeatureStats, add_by_label, fid, inception_score, split_of

FID = "fid"
IS = "is"
IS_STD = "is_std"
CLASS_CONSISTENCY = "class_consistency"
LABELS_COVERED = "labels_covered"


class ImageEvaluator(Evaluator):
    def __init__(self, dataset, extractors: list[Extractor], chunk: int = 500, is_splits: int = IS_SPLITS):
        self.dataset, self.extractors, self.chunk, self.is_splits = dataset, extractors, chunk, is_splits
        self._reference: dict[str, FeatureStats] = {}
        self._classes: dict[str, list[FeatureStats]] = {}

    def describe(self) -> dict[str, str]:
        return {"is_splits": str(self.is_splits), **{e.prefix + "weights_sha256": e.digest for e in self.extractors}}

    def reference(self, extractor: Extractor, comm: ControlChannel) -> FeatureStats:
        if extractor.digest not in self._reference:
            self._reference[extractor.digest] = reference_stats(self.dataset, extractor, comm)
        return self._reference[extractor.digest]

    def class_reference(self, extractor: Extractor, comm: ControlChannel) -> list[FeatureStats]:
        if extractor.digest not in self._classes:
            self._classes[extractor.digest] = class_reference_stats(self.dataset, extractor, comm)
        return self._classes[extractor.digest]

    def splits(self, n_total: int) -> int:
        return min(self.is_splits, n_total)

    @torch.no_grad()
    def statistics(self, sampler: Sampler, index: np.ndarray, n_total: int, comm: ControlChannel) -> Stats:
        """Per extractor (prefix p): p+"n", p+"s", p+"q" (features), p+"cls" (one ClassStats row
        n, sum p, sum p log p per IS split), p+"hits" (conditional samples classified as their
        label); "labeled" (conditional samples); per label c, for extractors whose classes are the
        dataset's: p+"label_n", p+"label_s", p+"label_q", p+"label_hits"."""
        comm, splits, C = control_of(comm), self.splits(n_total), self.dataset.spec.num_classes
        stats: Stats = {"labeled": np.zeros(1)}
        for e in self.extractors:
            p, d = e.prefix, e.dim
            stats.update({p + "n": np.zeros(1), p + "s": np.zeros(d), p + "q": np.zeros((d, d)),
                          p + "cls": np.zeros((splits, e.num_classes + 2)), p + "hits": np.zeros(1)})
            if e.dataset_classes:
                stats.update({p + "label_n": np.zeros(C), p + "label_s": np.zeros((C, d)),
                              p + "label_q": np.zeros((C, d, d)), p + "label_hits": np.zeros(C)})
        progress = Progress("evaluating", len(index), "samples")
        done = 0
        for idx, x, y in draws(sampler, index, comm, self.chunk):
            done += len(idx)
            progress.update(done)
            if x.shape[0] == 0:
                continue
            part = split_of(idx, splits)
            if y is not None:
                y = y.cpu()
                stats["labeled"] += x.shape[0]
            for e in self.extractors:
                p = e.prefix
                f, logits = e.embed(x)
                f64 = f.numpy()
                stats[p + "n"] += f64.shape[0]
                stats[p + "s"] += f64.sum(axis=0)
                stats[p + "q"] += f64.T @ f64
                for s in np.unique(part):
                    cs = ClassStats.empty(e.num_classes)
                    cs.add(logits[torch.from_numpy(part == s)])
                    stats[p + "cls"][s] += np.concatenate([[cs.n], cs.p, [cs.h]])
                if y is None:
                    continue
                right = (logits.argmax(dim=1) == y).numpy()
                stats[p + "hits"] += right.sum()
                if e.dataset_classes:
                    labels = y.numpy()
                    add_by_label(stats[p + "label_n"], stats[p + "label_s"], stats[p + "label_q"], f64, labels)
                    stats[p + "label_hits"] += np.bincount(labels[right], minlength=C)
        progress.close()
        return stats

    def metrics(self, stats: Stats, comm: ControlChannel) -> dict[str, float]:
        out: dict[str, float] = {}
        labeled = float(stats["labeled"][0])
        for e in self.extractors:
            p = e.prefix
            feats = FeatureStats(int(round(stats[p + "n"][0])), stats[p + "s"], stats[p + "q"])
            out[p + FID] = fid(feats, self.reference(e, control_of(comm)))
            out[p + IS], out[p + IS_STD] = inception_score(
                [ClassStats(int(round(row[0])), row[1:-1], float(row[-1])) for row in stats[p + "cls"]])
            if labeled > 0 and e.dataset_classes:
                out[p + CLASS_CONSISTENCY] = float(stats[p + "hits"][0] / labeled)
                out.update(self._per_label(e, stats, comm))
        return out

    def _per_label(self, e: Extractor, stats: Stats, comm: ControlChannel) -> dict[str, float]:
        p, out = e.prefix, {}
        n, hits = stats[p + "label_n"], stats[p + "label_hits"]
        refs = self.class_reference(e, control_of(comm))
        for c in np.flatnonzero(n > 0):
            if n[c] >= 2:
                mine = FeatureStats(int(round(n[c])), stats[p + "label_s"][c], stats[p + "label_q"][c])
                out[f"{p}{FID}_label{c}"] = fid(mine, refs[c])
            out[f"{p}{CLASS_CONSISTENCY}_label{c}"] = float(hits[c] / n[c])
        seen = n > 0
        out[p + LABELS_COVERED] = float(np.sum(hits[seen] >= LABEL_COVERED * n[seen]))
        return out
