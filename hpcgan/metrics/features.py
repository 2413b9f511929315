"""Feature extractors: images in [-1, 1] -> (features f, class logits) for FID and IS.

An extractor is identified by ``digest`` (the SHA-256 of its weights file), which keys cached
reference statistics, so statistics are never reused with different weights.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Extractor(ABC):
    #: metric-name prefix: "" for the standard Inception-v3, "proxy_" for hpcgan's own classifier
    prefix: str
    digest: str
    dim: int
    num_classes: int
    #: True when the logits' classes are the dataset's labels (so class consistency is defined)
    dataset_classes: bool = False
    device: torch.device = torch.device("cpu")

    @abstractmethod
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch on ``self.device``: (features (B, dim), logits (B, num_classes))."""

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits of ``x`` (N, C, H, W) in [-1, 1], in batches, returned on the CPU."""
        feats, logits = [], []
        for chunk in x.split(batch_size):
            f, lg = self._forward(chunk.to(self.device, torch.float32))
            feats.append(f.double().cpu())
            logits.append(lg.double().cpu())
        if not feats:
            return torch.zeros(0, self.dim, dtype=torch.float64), torch.zeros(0, self.num_classes, dtype=torch.float64)
        return torch.cat(feats), torch.cat(logits)
