"""Sample grids: a PNG of generated images, from a tensor or from a run's model.

``python -m hpcgan.grid RUN.h5 OUT.png [--n 64] [--nrow 8] [--model rank0]`` draws from the run's
final model (``RUN.h5.model/``, written at the end of every run), or from a checkpoint
(``RUN.h5.ckpt/rank{r}.pt``, as ``hpcgan eval`` reads one), fixed latent seed. Conditional and
per-label models (cwgan, pcwgan) give one row per class, ``--n`` samples in all (at least one per class).
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


def samples_of(target: str | Path, n: int, model: str = "") -> tuple[torch.Tensor, int]:
    """(n images, images per row) of a run's model: one row per class for conditional models."""
    from .data import build_dataset
    from .errors import UsageError
    from .evaluate import is_checkpoint, model_from_checkpoint
    from .results.model import read_final_model
    from .world import init_world

    target = Path(target)
    final = model_from_checkpoint(target, init_world(set_threads=False), None) if is_checkpoint(target) \
        else read_final_model(target)
    if model not in final.models:
        raise UsageError(f"no model '{model}' in {final.source}; it has: {', '.join(repr(m) for m in final.models)}")
    spec = build_dataset(final.cfg.data.data, labels=final.cfg.data.labels).spec
    if final.models[model].kind == "single":
        return final.sampler(model, spec, n, 0, 1)(n)[0], 0
    classes = spec.num_classes
    per_class = max(1, n // classes)
    x, y = final.sampler(model, spec, per_class * classes, 0, 1)(per_class * classes)
    order = torch.argsort(y, stable=True)  # labels cycle 0..C-1: sorting makes one row per class
    return x[order], per_class


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m hpcgan.grid", description=__doc__.splitlines()[0])
    p.add_argument("run", help="RUN.h5 (its final model), RUN.h5.model/ or a checkpoint rank{r}.pt")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=64, help="samples (conditional models: rounded to whole rows per class)")
    p.add_argument("--nrow", type=int, default=8, help="images per row of an unconditional model")
    p.add_argument("--model", default="", help="which model of the run ('' = its own; dposg: 'rank0')")
    a = p.parse_args(argv)
    images, per_row = samples_of(a.run, a.n, a.model)
    path = save_grid(images, a.out, per_row or a.nrow)
    print(json.dumps({"grid": str(path), "samples": len(images), "per_row": per_row or a.nrow}))


if __name__ == "__main__":
    from .errors import UsageError

    try:
        main()
    except UsageError as e:
        raise SystemExit(f"hpcgan.grid: error: {e}") from None
