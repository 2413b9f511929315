"""Datasets, looked up by ``--data``: synthetic Gaussian mixtures here; image datasets register too.

A dataset gives its :class:`DataSpec` and, per rank, an infinite :class:`Loader` of ``(x, y)``
batches whose position can be saved and restored (for bit-identical ``--resume``). ``--data`` takes
``NAME`` or ``NAME:ARG`` (e.g. ``h5:data/cifar10.h5``).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

import torch

from ..errors import UsageError
from ..registry import Registry
from ..world import rank_seed


@dataclass(frozen=True)
class DataSpec:
    """What models and metrics need to know about the data."""

    shape: tuple[int, ...]     # one sample, e.g. (2,) or (1, 32, 32)
    num_classes: int           # labels 0..num_classes-1 (mixture modes count as labels)


class Loader(ABC, Iterator[tuple[torch.Tensor, torch.Tensor]]):
    """Infinite per-rank stream of (samples, labels) batches with a restorable position."""

    @abstractmethod
    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]: ...

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Dataset(ABC):
    spec: DataSpec

    @abstractmethod
    def loader(self, batch_size: int, rank: int, size: int, seed: int,
               labels: list[int] | None = None) -> Loader:
        """This rank's stream; ``labels`` restricts it to those classes (per-label views)."""

    def empty_labels(self) -> list[int]:
        """The labels of no sample (a generated distribution has none)."""
        return []

    def restrict_labels(self, k: int) -> Dataset:
        """The same data with only labels 0..k-1 (``--labels K``); ``spec.num_classes`` = k."""
        raise UsageError(f"{type(self).__name__} cannot be restricted to the first {k} labels")


#: ``builder(arg, shard)``: ``arg`` is what follows ``NAME:`` ("" if nothing); ``shard`` is the
#: ``--shard`` policy ("even" or "uneven"), which datasets without a finite index set ignore.
DatasetBuilder = Callable[[str, str], Dataset]
DATASETS: Registry[DatasetBuilder] = Registry("dataset")


def build_dataset(name: str, shard: str = "even", labels: int = 0) -> Dataset:
    """``mog8`` -> builder("", shard) ; ``h5:PATH`` -> builder("PATH", shard); ``labels`` = K > 0
    keeps only labels 0..K-1 (mixture modes count as labels), 0 keeps all."""
    key, _, arg = name.partition(":")
    ds = DATASETS.get(key)(arg, shard)
    if labels < 0 or labels > ds.spec.num_classes:
        raise UsageError(f"--labels {labels}: {name} has {ds.spec.num_classes} labels (use 1..{ds.spec.num_classes}, "
                         "or 0 for all)")
    return ds.restrict_labels(labels) if 0 < labels < ds.spec.num_classes else ds


class GaussianMixture(Dataset):
    """Equal-weight isotropic 2-D Gaussians with standard deviation ``sigma`` around ``centers``."""

    def __init__(self, centers: torch.Tensor, sigma: float):
        self.centers = centers.to(torch.float32)
        self.sigma = float(sigma)
        self.spec = DataSpec(shape=(centers.shape[1],), num_classes=centers.shape[0])

    def sample(self, n: int, generator: torch.Generator, labels: list[int] | None = None):
        choices = torch.arange(len(self.centers)) if labels is None else torch.tensor(labels)
        y = choices[torch.randint(len(choices), (n,), generator=generator)]
        x = self.centers[y] + self.sigma * torch.randn(n, self.centers.shape[1], generator=generator)
        return x, y

    def loader(self, batch_size: int, rank: int, size: int, seed: int,
               labels: list[int] | None = None) -> Loader:
        return _MixtureLoader(self, batch_size, rank_seed(seed, rank, "data"), labels)

    def restrict_labels(self, k: int) -> GaussianMixture:
        return GaussianMixture(self.centers[:k], self.sigma)


class _MixtureLoader(Loader):
    def __init__(self, mixture: GaussianMixture, batch_size: int, seed: int, labels: list[int] | None):
        self.mixture, self.batch_size, self.labels = mixture, batch_size, labels
        self.generator = torch.Generator().manual_seed(seed)

    def __next__(self):
        return self.mixture.sample(self.batch_size, self.generator, self.labels)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def ring_centers(k: int = 8, radius: float = 2.0) -> torch.Tensor:
    angles = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], dim=1)


def grid_centers(n: int = 5, spacing: float = 2.0) -> torch.Tensor:
    axis = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * spacing
    return torch.cartesian_prod(axis, axis)


def mixture_sigma(arg: str, default: float) -> float:
    """The standard deviation of ``mogN:SIGMA`` (default when no argument is given)."""
    if not arg:
        return default
    try:
        sigma = float(arg)
    except ValueError:
        sigma = math.nan
    if not (math.isfinite(sigma) and sigma > 0):
        raise UsageError(f"mixture standard deviation must be a positive number (e.g. mog8:0.1), got '{arg}'")
    return sigma


@DATASETS.register("mog8")
def mog8(arg: str = "", shard: str = "even") -> GaussianMixture:
    """Ring of 8 Gaussians, radius 2, sigma 0.02 (``mog8:SIGMA`` for another sigma)."""
    return GaussianMixture(ring_centers(8, 2.0), mixture_sigma(arg, 0.02))


@DATASETS.register("mog25")
def mog25(arg: str = "", shard: str = "even") -> GaussianMixture:
    """5x5 grid of Gaussians, spacing 2 (centres -4..4), sigma 0.05 (``mog25:SIGMA`` for another sigma)."""
    return GaussianMixture(grid_centers(5, 2.0), mixture_sigma(arg, 0.05))


class IndexedDataset(Dataset):
    """A finite set of labelled samples addressed by index; subclasses only implement :meth:`fetch`.

    Sharding: every epoch all ranks draw the same permutation (seeded by (seed, epoch)) of the
    chosen indices and rank r takes positions r, r + M, r + 2M, ... ("even" first trims the
    permutation to a multiple of M, so every rank sees the same count; "uneven" keeps all). Shards
    are disjoint within an epoch. ``labels=`` views use a class index built once.
    """

    def __init__(self, labels: torch.Tensor, spec: DataSpec, shard: str = "even"):
        if shard not in ("even", "uneven"):
            raise ValueError(f"shard policy must be 'even' or 'uneven', got {shard!r}")
        self.labels, self.spec, self.shard = labels.to(torch.int64), spec, shard
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=spec.num_classes)
        self.by_label = dict(enumerate(order.split(counts.tolist())))
        self.pool: torch.Tensor | None = None  # the indices in use when restricted to some labels

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def fetch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples (float, in the model's range) and labels at ``idx``, in that order."""

    def empty_labels(self) -> list[int]:
        return [c for c, idx in self.by_label.items() if len(idx) == 0]

    def indices(self, labels: list[int] | None = None) -> torch.Tensor:
        if labels is None:
            return torch.arange(len(self.labels)) if self.pool is None else self.pool
        if any(c not in self.by_label for c in labels):
            raise UsageError(f"labels {labels} outside 0..{self.spec.num_classes - 1}")
        return torch.cat([self.by_label[c] for c in labels])

    def restrict_labels(self, k: int) -> IndexedDataset:
        """In place: samples of labels >= k are never drawn (indices stay those of the full set)."""
        self.pool = torch.sort(torch.cat([self.by_label[c] for c in range(k)])).values
        self.by_label = {c: v for c, v in self.by_label.items() if c < k}
        self.spec = replace(self.spec, num_classes=k)
        return self

    def loader(self, batch_size: int, rank: int, size: int, seed: int,
               labels: list[int] | None = None) -> Loader:
        return _IndexLoader(self, self.indices(labels), batch_size, rank, size, seed)


class _IndexLoader(Loader):
    def __init__(self, ds: IndexedDataset, pool: torch.Tensor, batch_size: int, rank: int, size: int, seed: int):
        self.ds, self.pool, self.batch_size = ds, pool, batch_size
        self.rank, self.size, self.seed = rank, size, seed
        self.epoch, self.pos = 0, 0
        self.shard = self._shard(0)
        if len(self.shard) == 0:
            raise UsageError(f"rank {rank} gets no samples: {len(pool)} samples for {size} ranks")

    def _shard(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(rank_seed(self.seed, 0, f"epoch{epoch}"))  # same on all ranks
        perm = self.pool[torch.randperm(len(self.pool), generator=g)]
        if self.ds.shard == "even":
            perm = perm[: len(perm) - len(perm) % self.size]
        return perm[self.rank::self.size]

    def next_indices(self) -> torch.Tensor:
        """The next batch's indices, advancing (and reshuffling at epoch ends)."""
        take = []
        need = self.batch_size
        while need:
            chunk = self.shard[self.pos:self.pos + need]
            take.append(chunk)
            need -= len(chunk)
            self.pos += len(chunk)
            if self.pos >= len(self.shard):
                self.epoch, self.pos = self.epoch + 1, 0
                self.shard = self._shard(self.epoch)
        return torch.cat(take)

    def __next__(self):
        return self.ds.fetch(self.next_indices())

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self.shard = self._shard(self.epoch)


class ArrayDataset(IndexedDataset):
    """Labelled images held in memory as one float tensor in [-1, 1], shape (N, C, H, W)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int, shard: str = "even"):
        super().__init__(labels, DataSpec(shape=tuple(images.shape[1:]), num_classes=num_classes), shard)
        self.images = images

    def fetch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[idx], self.labels[idx]

    def restrict_labels(self, k: int) -> ArrayDataset:
        """A copy holding only labels < k, so metrics that read ``images``/``labels`` see them alone."""
        keep = self.labels < k
        return ArrayDataset(self.images[keep], self.labels[keep], k, self.shard)


def digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes) bilinearly resized to 32x32:
    float images in [0, 1] of shape (1797, 1, 32, 32) and int64 labels."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return x.clamp(0, 1), torch.tensor(raw.target, dtype=torch.int64)


@DATASETS.register("digits")
def digits(arg: str = "", shard: str = "even") -> ArrayDataset:
    """:func:`digits_images` scaled to [-1, 1], held in memory."""
    x, y = digits_images()
    return ArrayDataset(x * 2 - 1, y, num_classes=10, shard=shard)


