"""Sample grids: images in [-1, 1] (or 2-D points) saved as one PNG for a quick look."""
from __future__ import annotations

from pathlib import Path

import torch


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write (N, C, H, W) images with values in [-1, 1] as a PNG grid of ``nrow`` per row."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().cpu().float().clamp(-1, 1).add(1).div(2), path, nrow=nrow, padding=2)
    return path
