"""Sample grids: a PNG of generated images, from a tensor or from a run's checkpoint.

``python -m hpcgan.grid RUN.h5.ckpt/rank0.pt OUT.png [--n 64] [--nrow 8]`` rebuilds G from the
checkpoint's config and parameters and saves a grid of n samples (fixed latent seed 0).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write (N, C, H, W) images with values in [-1, 1] as a PNG grid of ``nrow`` per row."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().cpu().float().clamp(-1, 1).add(1).div(2), path, nrow=nrow, padding=2)
    return path


@torch.no_grad()
def samples_from_checkpoint(ckpt: str | Path, n: int, seed: int = 0) -> torch.Tensor:
    """n samples of the (unconditional) generator stored in a GanAlgorithm checkpoint."""
    from .checkpoint import load as load_checkpoint
    from .config import RunConfig
    from .data import build_dataset
    from .gan.flat import FlatParams
    from .gan.models import build_models

    state = load_checkpoint(Path(ckpt))  # tensors and plain values only: never runs code from the file
    cfg = RunConfig.from_json(state["config_json"])
    G, D = build_models(build_dataset(cfg.data.data, labels=cfg.data.labels).spec, cfg.model, False)
    flat = FlatParams({"G": G, "D": D})
    flat.params.copy_(state["algorithm"]["params"])
    G.eval()
    return G(torch.randn(n, cfg.model.z_dim, generator=torch.Generator().manual_seed(seed)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m hpcgan.grid", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--nrow", type=int, default=8)
    a = p.parse_args(argv)
    path = save_grid(samples_from_checkpoint(a.checkpoint, a.n), a.out, a.nrow)
    print(json.dumps({"grid": str(path), "samples": a.n}))


if __name__ == "__main__":
    main()
