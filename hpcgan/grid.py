"""Sample grids: a PNG of generated images, from a tensor or from a run's model.

``hpcgan grid RUN.h5 OUT.png [--n 64] [--nrow 8] [--model rank0] [--json]`` (also ``python -m
hpcgan.grid ...``) draws from the run's final model (``RUN.h5.model/``, written at the end of every
run), or from a checkpoint (``RUN.h5.ckpt/rank{r}.pt``, as ``hpcgan eval`` reads one), fixed latent
seed, and prints one line saying what it wrote (``--json``: the same as JSON). Image data: a grid;
conditional and per-label models (cwgan, pcwgan) give one row per class, ``--n`` samples in all (at
least one per class). A 2-D mixture (mog8, mog25): a scatter of ``--n`` samples (default
:data:`MIXTURE_SAMPLES`) over the mixture's modes and their 3-sigma circles, where high-quality
samples fall (:mod:`hpcgan.metrics.mog`).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

#: Default samples of a mixture's scatter (an image grid's default is 64).
MIXTURE_SAMPLES = 2000


@dataclass(frozen=True)
class Drawn:
    """What :func:`draw` wrote."""

    grid: str           # the PNG
    kind: str           # "images" or "scatter"
    samples: int
    per_row: int        # images per row (0 for a scatter)
    data: str

    def line(self) -> str:
        if self.kind == "scatter":
            return f"wrote {self.grid}: scatter of {self.samples} samples of {self.data} over its modes"
        return f"wrote {self.grid}: {self.samples} images of {self.data}, {self.per_row} per row"


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write (N, C, H, W) images with values in [-1, 1] as a PNG grid of ``nrow`` per row."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().cpu().float().clamp(-1, 1).add(1).div(2), path, nrow=nrow, padding=2)
    return path


def save_scatter(points: torch.Tensor, centers: torch.Tensor, sigma: float, path: str | Path, title: str) -> Path:
    """Write 2-D ``points`` as a scatter over the mixture's ``centers`` with 3-sigma circles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    p, c = points.detach().cpu().float().numpy(), centers.cpu().float().numpy()
    with plt.rc_context({"font.size": 8}):
        fig, ax = plt.subplots(figsize=(3.5, 3.5), layout="constrained")
        ax.scatter(p[:, 0], p[:, 1], s=3, alpha=0.4, color="#0072B2", lw=0, label=f"{len(p)} generated samples")
        for i, (x, y) in enumerate(c):
            ax.add_patch(plt.Circle((x, y), 3 * sigma, fill=False, color="#D55E00", lw=0.8,
                                    label="mode ± 3σ (high quality)" if i == 0 else None))
        ax.plot(c[:, 0], c[:, 1], "+", color="#D55E00", ms=6)
        span = float(abs(c).max() + 6 * sigma + 0.5)
        ax.set_xlim(-span, span)
        ax.set_ylim(-span, span)
        ax.set_aspect("equal")
        ax.set_xlabel("x₁")
        ax.set_ylabel("x₂")
        ax.set_title(title)
        fig.legend(loc="outside lower center", ncol=2, fontsize=6.5, frameon=False)
        fig.savefig(path, dpi=200)
        plt.close(fig)
    return path


def _final(target: str | Path, model: str):
    """(the final model, its dataset) of a run's results file, model folder or checkpoint."""
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
    return final, build_dataset(final.cfg.data.data, labels=final.cfg.data.labels)


def samples_of(target: str | Path, n: int, model: str = "") -> tuple[torch.Tensor, int]:
    """(n samples, images per row) of a run's model: one row per class for conditional models."""
    final, dataset = _final(target, model)
    return _samples(final, dataset.spec, n, model)


def _samples(final, spec, n: int, model: str) -> tuple[torch.Tensor, int]:
    if final.models[model].kind == "single":
        return final.sampler(model, spec).draw(np.arange(n))[0], 0
    classes = spec.num_classes
    per_class = max(1, n // classes)
    x, y = final.sampler(model, spec).draw(np.arange(per_class * classes))
    order = torch.argsort(y, stable=True)  # labels cycle 0..C-1: sorting makes one row per class
    return x[order], per_class


def draw(target: str | Path, out: str | Path, n: int | None = None, nrow: int = 8, model: str = "") -> Drawn:
    """Draw ``n`` samples of a run's model into ``out``: a grid of images, or a scatter for a 2-D
    mixture (module docstring)."""
    from .data.base import GaussianMixture
    from .errors import UsageError

    final, dataset = _final(target, model)
    mixture = isinstance(dataset, GaussianMixture)
    n = n if n is not None else (MIXTURE_SAMPLES if mixture else 64)
    if n < 1:
        raise UsageError(f"--n must be at least 1, got {n}")
    x, per_row = _samples(final, dataset.spec, n, model)
    name = final.cfg.data.data
    if mixture:
        title = f"{final.cfg.algo.algo} on {name}, step {final.step}" + (f", model {model}" if model else "")
        path = save_scatter(x, dataset.centers, dataset.sigma, out, title)
        return Drawn(str(path), "scatter", len(x), 0, name)
    if len(dataset.spec.shape) != 3:
        raise UsageError(f"{name}: samples of shape {tuple(dataset.spec.shape)} are neither images nor 2-D points")
    path = save_grid(x, out, per_row or nrow)
    return Drawn(str(path), "images", len(x), per_row or nrow, name)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("run", help="RUN.h5 (its final model), RUN.h5.model/ or a checkpoint rank{r}.pt")
    p.add_argument("out", help="the PNG to write")
    p.add_argument("--n", type=int, help=f"samples (default: 64 images, {MIXTURE_SAMPLES} mixture points; "
                   "conditional models: rounded to whole rows per class)")
    p.add_argument("--nrow", type=int, default=8, help="images per row of an unconditional model")
    p.add_argument("--model", default="", help="which model of the run ('' = its own; dposg: 'rank0')")
    p.add_argument("--json", action="store_true", help="print what was written as JSON instead of a line")
    return p


def run(args: argparse.Namespace) -> int:
    """Draw, then print one line (or JSON with ``--json``)."""
    drawn = draw(args.run, args.out, args.n, args.nrow, args.model)
    print(json.dumps(asdict(drawn)) if args.json else drawn.line())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m hpcgan.grid``: the same as ``hpcgan grid``, its errors one line and exit 2."""
    from .errors import UsageError

    p = add_arguments(argparse.ArgumentParser(prog="python -m hpcgan.grid", description=__doc__.splitlines()[0]))
    try:
        return run(p.parse_args(argv))
    except UsageError as e:
        print(f"hpcgan: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
