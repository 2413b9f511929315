"""A dataset's identity, where its derived files live, and its cached reference statistics.

Image datasets expose ``labels`` (N,) and either ``fetch(idx) -> (images, labels)`` (the indexed
datasets: in-memory arrays and HDF5 files) or ``images`` (N, C, H, W) in [-1, 1] indexable by sorted
index arrays, plus optionally ``path`` (their HDF5 file) and ``checksum``. Reference statistics
(features of every real image the run trains on: an HDF5 dataset restricted by ``--labels K``
keeps its file but draws only from labels < K) are computed once, collectively (rank r embeds
images r, r+M, ...), and cached as ``<home>/refstats-<extractor>-<dataset>[-labels<K>].npz``,
keyed by the extractor's weights digest, the dataset checksum and the restriction: next to the
dataset's file when it has one, else in :func:`~hpcgan.cache.cache_dir`. Per-class statistics
(:func:`class_reference_stats`, the references of per-label FID) are cached the same way, as
``...-classes<C>.npz``. A cache file is written under a name of its own writer and renamed, so
ranks that compute one alone (pcwgan's evaluations during training) never see half a file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..comm.control import ControlChannel, control_of
from ..errors import UsageError
from ..log import Progress, get_logger
from .features import Extractor
from ..cache import cache_dir
from .files import sha256_file, tensor_digest
from .stats import ClassStats, FeatureStats, add_by_label, allreduce_arrays


def is_image_dataset(dataset) -> bool:
    has_images = hasattr(dataset, "fetch") or hasattr(dataset, "images")
    return has_images and hasattr(dataset, "labels") and len(dataset.spec.shape) == 3


def take(dataset, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (float32) and labels (int64) at sorted indices ``idx``."""
    idx = np.sort(np.asarray(idx, dtype=np.int64))
    if hasattr(dataset, "fetch"):
        x, y = dataset.fetch(torch.from_numpy(idx))
    else:
        x, y = dataset.images[idx], dataset.labels[idx]
    return torch.as_tensor(np.asarray(x), dtype=torch.float32), torch.as_tensor(np.asarray(y), dtype=torch.int64)


def dataset_digest(dataset) -> str:
    """The dataset's ``checksum``, else the SHA-256 of its file, else of its in-memory arrays."""
    if getattr(dataset, "checksum", None):
        return str(dataset.checksum)
    if getattr(dataset, "path", None):
        return sha256_file(dataset.path)
    if isinstance(getattr(dataset, "images", None), torch.Tensor):
        return tensor_digest(dataset.images, dataset.labels)
    raise UsageError("cannot identify this dataset: it has no checksum, file path or in-memory arrays")


def dataset_home(dataset) -> Path:
    """Where files derived from ``dataset`` live: next to its file, else the hpcgan cache."""
    path = getattr(dataset, "path", None)
    return Path(path).parent if path else cache_dir()


def reference_indices(dataset) -> np.ndarray:
    """Indices of the images the reference covers: those the dataset draws from."""
    if hasattr(dataset, "indices"):
        return np.sort(dataset.indices().numpy())
    return np.arange(len(dataset.labels))


def reference_file(dataset, extractor: Extractor) -> Path:
    restricted = len(reference_indices(dataset)) < len(dataset.labels)
    suffix = f"-labels{dataset.spec.num_classes}" if restricted else ""
    return dataset_home(dataset) / f"refstats-{extractor.digest[:16]}-{dataset_digest(dataset)[:16]}{suffix}.npz"


def reference_stats(dataset, extractor: Extractor, comm: ControlChannel, batch_size: int = 256) -> FeatureStats:
    """Feature statistics of the images ``dataset`` draws from: from the cache, else computed and cached."""
    control = comm = control_of(comm)
    path = control.bcast(reference_file(dataset, extractor) if comm.rank == 0 else None, root=0)
    if path.is_file():
        with np.load(path) as f:
            return FeatureStats.from_dict(f)
    every = reference_indices(dataset)
    get_logger().info("computing reference statistics of %d images -> %s", len(every), path)
    stats = FeatureStats.empty(extractor.dim)
    mine = every[comm.rank::comm.size]
    progress = Progress("reference statistics", len(every), "images")
    for chunk in np.array_split(mine, max(1, len(mine) // batch_size)):
        stats.add(extractor.embed(take(dataset, chunk)[0], batch_size)[0])
        progress.update(stats.n * comm.size)  # rank 0's count stands for all ranks
    progress.close()
    stats = stats.allreduce(comm)
    if comm.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(path, stats.to_dict())
    control.barrier()
    return stats


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def class_reference_stats(dataset, extractor: Extractor, comm: ControlChannel,
                          batch_size: int = 256) -> list[FeatureStats]:
    """Per class c < C, the feature statistics of the images of class c the dataset draws from;
    from the cache, else computed (collectively over ``comm``) and cached."""
    comm = control_of(comm)
    C = dataset.spec.num_classes
    path = reference_file(dataset, extractor)
    path = path.with_name(path.stem + f"-classes{C}.npz")
    path = comm.bcast(path if comm.rank == 0 else None, root=0)
    if not path.is_file():
        get_logger().info("computing per-class reference statistics -> %s", path)
        every = reference_indices(dataset)
        mine = every[comm.rank::comm.size]
        n, s, q = np.zeros(C), np.zeros((C, extractor.dim)), np.zeros((C, extractor.dim, extractor.dim))
        for chunk in np.array_split(mine, max(1, len(mine) // batch_size)):
            x, y = take(dataset, chunk)
            add_by_label(n, s, q, extractor.embed(x, batch_size)[0].numpy(), y.numpy())
        n, s, q = allreduce_arrays([n, s, q], comm)
        if comm.rank == 0:
            _save(path, {"n": n, "s": s, "q": q})
        comm.barrier()
        return [FeatureStats(int(round(n[c])), s[c], q[c]) for c in range(C)]
    with np.load(path) as f:
        return [FeatureStats(int(round(f["n"][c])), f["s"][c], f["q"][c]) for c in range(C)]


def embed_stats(extractor: Extractor, x: torch.Tensor) -> tuple[FeatureStats, ClassStats, torch.Tensor]:
    """This rank's (feature statistics, class statistics, predicted labels) of images ``x``."""
    feats, logits = extractor.embed(x)
    fs = FeatureStats.empty(extractor.dim)
    fs.add(feats)
    cs = ClassStats.empty(extractor.num_classes)
    cs.add(logits)
    return fs, cs, logits.argmax(dim=1)
