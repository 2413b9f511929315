"""The run's final model: the generator(s) a run ends with, kept next to its results file so that
``hpcgan eval`` and ``hpcgan grid`` work after any run, on any number of ranks.

At the end of training every rank that holds a part of the model writes ``RUN.h5.model/rank{r}.pt``
(sync, dqgan, cwgan, dposg: rank 0; pcwgan: every rank, its labels' generators). Generators only,
no critic or optimizer state: a few MB. One file holds plain types and tensors, so it loads with
``torch.load(weights_only=True)``::

    {"format": 1, "config_json": str, "step": int, "world_size": int, "rank": int,
     "models": {suffix: {"kind": KIND, "weights": {label: G.state_dict()}}}}

``suffix`` "" is the run's model (metrics with plain names), others name further models (DPOSG:
"rank0", rank 0's own model). ``KIND`` is "single" (one unconditional G(z), label key -1),
"conditional" (one G(z, y), key -1) or "per_label" (one unconditional G_c per label c, keys c).

A :class:`FinalModel` samples on any rank without communication: it is a
:class:`~hpcgan.metrics.sampling.Sampler` drawing the samples of given global indices, sample i of
a conditional or per-label model conditioned on label ``eval_labels(i)`` in the data's label
proportions (``hpcgan eval``: the same interleaved labels as evaluations during training), or
on label i mod C without proportions (``hpcgan grid``: equal rows per class).
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..checkpoint import read_plain
from ..comm.control import control_of
from ..config import RunConfig
from ..errors import UsageError

if TYPE_CHECKING:
    from ..metrics.sampling import Sampler

FORMAT = 1
KINDS = ("single", "conditional", "per_label")
SINGLE = -1   # label key of a single (unconditional or conditional) generator


@dataclass
class Generators:
    """One model made of generator weights: see the module docstring for ``kind``."""

    kind: str
    weights: dict[int, dict[str, torch.Tensor]]

    @classmethod
    def of(cls, G: nn.Module, conditional: bool) -> "Generators":
        return cls("conditional" if conditional else "single", {SINGLE: _copy(G.state_dict())})

    @classmethod
    def per_label(cls, generators: dict[int, nn.Module]) -> "Generators":
        return cls("per_label", {int(c): _copy(G.state_dict()) for c, G in generators.items()})

    def to_plain(self) -> dict:
        return {"kind": self.kind, "weights": self.weights}

    @classmethod
    def from_plain(cls, d: dict) -> "Generators":
        if d.get("kind") not in KINDS:
            raise UsageError(f"unknown generator kind {d.get('kind')!r}; valid: {', '.join(KINDS)}")
        return cls(d["kind"], {int(k): v for k, v in d["weights"].items()})


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def merge(parts: list[dict[str, Generators]]) -> dict[str, Generators]:
    """The whole model from the ranks' parts: single models from one rank, per-label ones united
    (each label from one rank)."""
    out: dict[str, Generators] = {}
    for part in parts:
        for suffix, g in part.items():
            if suffix not in out:
                out[suffix] = Generators(g.kind, dict(g.weights))
                continue
            mine = out[suffix]
            if g.kind != "per_label" or mine.kind != "per_label" or set(g.weights) & set(mine.weights):
                raise UsageError(f"model '{suffix}' is held by more than one rank")
            mine.weights.update(g.weights)
    if "" not in out:
        raise UsageError("no part holds the run's model")
    return out


@dataclass
class FinalModel:
    cfg: RunConfig
    step: int
    models: dict[str, Generators]
    digest: str      # SHA-256 over the files the weights came from
    source: str      # where they came from

    def sampler(self, suffix: str, spec, rank: int = 0, *, proportions: np.ndarray | None = None,
                device: torch.device = torch.device("cpu")) -> "Sampler":
        """A sampler of model ``suffix`` on evaluation rank ``rank`` (its own noise stream): labels
        from ``proportions`` as in every evaluation, or i mod C when None. Local: no collective."""
        from ..gan.models import build_models, latent
        from ..metrics.sampling import Sampler, eval_labels
        from ..world import rank_seed

        g = self.models[suffix]
        missing = sorted(set(range(spec.num_classes)) - set(g.weights)) if g.kind == "per_label" else []
        if missing:
            raise UsageError(f"{self.source}: model '{suffix or 'main'}' lacks the generators of labels {missing}")
        nets = {}
        for label, state in g.weights.items():
            G = build_models(spec, self.cfg.model, g.kind == "conditional")[0].to(device)
            G.load_state_dict(state)
            nets[label] = G.eval()
        noise = torch.Generator(device=device).manual_seed(rank_seed(self.cfg.run.seed, rank, f"final-model{suffix}"))
        z_dim = self.cfg.model.z_dim

        class _Final(Sampler):
            @torch.no_grad()
            def draw(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
                n = len(index)
                z = latent(n, z_dim, noise, device)
                if g.kind == "single":
                    return nets[SINGLE](z).cpu(), None
                labels = torch.from_numpy(eval_labels(index, proportions) if proportions is not None
                                          else np.asarray(index, dtype=np.int64) % spec.num_classes).to(device)
                if g.kind == "conditional":
                    return nets[SINGLE](z, labels).cpu(), labels.cpu()
                x = torch.empty(n, *spec.shape, device=device)
                for c in labels.unique().tolist():
                    where = labels == c
                    x[where] = nets[c](z[where])
                return x.cpu(), labels.cpu()
        return _Final()


# -- files -----------------------------------------------------------------------------------------
def model_dir(results: str | Path) -> Path:
    """The final-model folder of a results file."""
    return Path(str(results) + ".model")


def results_of(target: str | Path) -> Path:
    """The results file that a run's model folder, checkpoint folder or file belongs to."""
    p = Path(target)
    if p.suffix == ".pt":
        p = p.parent
    return p.with_suffix("") if p.suffix in (".model", ".ckpt") else p


def save_final_model(results: str | Path, parts: dict[str, Generators], cfg: RunConfig, step: int, comm) -> Path:
    """Collective: every rank with a part writes it; the folder replaces an older one whole. ``step``
    is the steps taken (ranks that stop on their own clocks: the most any rank took)."""
    comm = control_of(comm)
    step = max(comm.allgather(step))
    final = model_dir(results)
    tmp = final.with_name(final.name + ".tmp")
    if comm.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    comm.barrier()
    if parts:
        torch.save({"format": FORMAT, "config_json": cfg.to_json(), "step": step, "world_size": comm.size,
                    "rank": comm.rank, "models": {s: g.to_plain() for s, g in parts.items()}}, tmp / f"rank{comm.rank}.pt")
    comm.barrier()
    if comm.rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    comm.barrier()
    return final


def files_digest(files: list[Path]) -> str:
    """SHA-256 over the files' contents, in the order given."""
    h = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def read_final_model(target: str | Path) -> FinalModel:
    """The final model of a run (its results file or its ``.model`` folder), from every rank's file."""
    folder = Path(target) if Path(target).suffix == ".model" else model_dir(target)
    files = sorted(folder.glob("rank*.pt"), key=lambda p: int(p.stem.removeprefix("rank")))
    if not files:
        raise UsageError(f"no final model in {folder} (written at the end of every run since results schema v3; "
                         "an older run can be evaluated from its checkpoint folder RUN.h5.ckpt)")
    saved = [read_plain(f, "final model") for f in files]  # tensors and plain values only: runs no code
    for s, f in zip(saved, files):
        if not isinstance(s, dict) or s.get("format") != FORMAT:
            raise UsageError(f"{f}: not a final model of format {FORMAT}")
        if (s.get("config_json"), s.get("step")) != (saved[0].get("config_json"), saved[0].get("step")):
            raise UsageError(f"{folder} mixes files of different runs or steps ({files[0].name}, {f.name})")
    try:
        parts = [{k: Generators.from_plain(v) for k, v in s["models"].items()} for s in saved]
        cfg, step = RunConfig.from_json(saved[0]["config_json"]), int(saved[0]["step"])
    except UsageError as e:
        raise UsageError(f"{folder}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"{folder}: damaged final model ({type(e).__name__}: {e})") from None
    return FinalModel(cfg, step, merge(parts), files_digest(files), str(folder))
