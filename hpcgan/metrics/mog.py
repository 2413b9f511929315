"""Quality of samples from a 2-D Gaussian mixture with K modes of standard deviation sigma.

Each sample is assigned to its nearest mode; it is *high quality* when within 3 sigma of it.
* modes covered: modes holding >= 1% of all samples among their high-quality ones;
* high-quality fraction: high-quality samples / all samples;
* mode KL: KL(p || uniform) of the histogram p of high-quality samples over the K modes
  (0 = perfectly balanced; log K = all in one mode).
Conditional samples (label c is mode c): per label, how many of its samples lie within 3 sigma of
its own mode (:func:`label_hits`; the per-label metrics are in :mod:`hpcgan.metrics`).
Counts are additive, so ranks evaluate their own share and the counts are summed.
"""
from __future__ import annotations

import math

import numpy as np
import torch

MODES_COVERED = "modes_covered"
HQ_FRACTION = "hq_fraction"
MODE_KL = "mode_kl"
LABELS_COVERED = "labels_covered"


def mode_counts(samples: torch.Tensor, centers: torch.Tensor, sigma: float) -> np.ndarray:
    """K+1 counts: high-quality samples per mode, then all the others."""
    samples = samples.detach().to(torch.float64).cpu()
    d = torch.cdist(samples, centers.to(torch.float64))
    dist, nearest = d.min(dim=1)
    k = centers.shape[0]
    hq = dist <= 3 * sigma
    counts = np.bincount(nearest[hq].numpy(), minlength=k).astype(np.int64)
    return np.append(counts, int((~hq).sum()))


def label_hits(samples: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor,
               sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per label c: (samples conditioned on c, those within 3 sigma of mode c)."""
    samples, labels = samples.detach().to(torch.float64).cpu(), labels.cpu().to(torch.int64)
    k = centers.shape[0]
    near = (samples - centers.to(torch.float64)[labels]).norm(dim=1) <= 3 * sigma
    n = np.bincount(labels.numpy(), minlength=k).astype(np.float64)
    return n, np.bincount(labels[near].numpy(), minlength=k).astype(np.float64)


def mixture_metrics(counts: np.ndarray) -> dict[str, float]:
    """Metrics from (possibly summed over ranks) :func:`mode_counts`."""
    per_mode, total = counts[:-1].astype(np.float64), float(counts.sum())
    k, hq = len(per_mode), per_mode.sum()
    if total == 0:
        raise ValueError("no samples to evaluate")
    covered = int(np.sum(per_mode >= 0.01 * total))
    if hq > 0:
        p = per_mode / hq
        kl = float(np.sum(p[p > 0] * np.log(p[p > 0] * k)))
    else:
        kl = math.log(k)
    return {MODES_COVERED: float(covered), HQ_FRACTION: float(hq / total), MODE_KL: kl}
