"""Image datasets converted to HDF5 by ``data_prep/prepare.py``, read with ``--data h5:PATH``.

File format (one file per dataset split)::

    /images       uint8 (N, C, H, W), C in {1, 3}, chunked in blocks of whole images
    /labels       int64 (N,), non-decreasing: images are stored grouped by class
    /label_index  int64 (K + 1,): class c occupies rows label_index[c] : label_index[c + 1]
    /class_names  str (K,)
    attrs         source, split, size, checksum (SHA-256 of the inputs), created_at, ...

Reading. Every rank opens the file itself (lazily, once per process, so forked workers reopen it)
and validates it on open. Sharding and per-epoch shuffling are those of every
:class:`~hpcgan.data.IndexedDataset`. Two read paths, chosen for throughput:

* **cache** (default when /images is at most :data:`CACHE_LIMIT` bytes, e.g. CIFAR-10's 150 MB):
  the whole uint8 array is read once with one contiguous read and batches are gathered from memory.
  The whole file, not the rank's shard, because the shared per-epoch shuffle moves every index to
  a different rank each epoch.
* **read** (larger files, e.g. ImageNet 64x64): each batch reads its de-duplicated indices in
  increasing order, one image per h5py read, and reorders them in memory. Measured on a CIFAR-shaped
  file, one h5py fancy-indexed read of the sorted indices is 10-15x slower than this on chunked
  data (HDF5 walks the selection chunk by chunk), and small chunks (~16 KiB, see
  :data:`hpcgan.data.writer.CHUNK_BYTES`) keep each single-image read from pulling in its neighbours.

Either way images leave as float32 in [-1, 1] (``x / 127.5 - 1``).
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch

from .base import DATASETS, DataSpec, IndexedDataset
from ..errors import UsageError

#: Files whose /images fit in this many bytes are cached in memory per rank.
CACHE_LIMIT = 2 * 1024**3

IMAGES, LABELS, LABEL_INDEX, CLASS_NAMES = "images", "labels", "label_index", "class_names"


def check_file(f: h5py.File, path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Validate an open dataset file; return (labels, class_names) or raise UsageError naming it."""
    def bad(msg: str) -> UsageError:
        return UsageError(f"{path}: not a valid hpcgan image file: {msg}")

    for name in (IMAGES, LABELS, LABEL_INDEX, CLASS_NAMES):
        if not isinstance(f.get(name), h5py.Dataset):
            raise bad(f"missing dataset /{name}")
    images, labels, index, names = f[IMAGES], f[LABELS], f[LABEL_INDEX], f[CLASS_NAMES]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3) or 0 in images.shape:
        raise bad(f"/images must be uint8 (N, C, H, W) with C in (1, 3) and N, H, W > 0; "
                  f"got {images.dtype} {images.shape}")
    n, k = images.shape[0], names.shape[0] if names.ndim == 1 else 0
    if labels.dtype != np.int64 or labels.shape != (n,):
        raise bad(f"/labels must be int64 of shape ({n},); got {labels.dtype} {labels.shape}")
    if k == 0:
        raise bad(f"/class_names must be a non-empty 1-D list; got shape {names.shape}")
    if index.dtype != np.int64 or index.shape != (k + 1,):
        raise bad(f"/label_index must be int64 of shape ({k + 1},); got {index.dtype} {index.shape}")
    y, offsets = labels[()], index[()]
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise bad(f"/labels must lie in [0, {k}) for {k} classes; found {y.min()}..{y.max()}")
    if offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 0):
        raise bad(f"/label_index must rise from 0 to {n}")
    if not np.array_equal(y, np.repeat(np.arange(k), np.diff(offsets))):
        raise bad("/labels disagree with /label_index (images must be grouped by class)")
    return y, [s.decode() if isinstance(s, bytes) else str(s) for s in names[()]]


class H5Dataset(IndexedDataset):
    """An HDF5 image file (format above) as a sharded, shuffled, per-label-viewable dataset."""

    def __init__(self, path: str | Path, shard: str = "even", cache: bool | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"{self.path}: no such dataset file (make one with data_prep/prepare.py)")
        try:
            with h5py.File(self.path, "r") as f:
                labels, self.class_names = check_file(f, self.path)
                shape, nbytes = f[IMAGES].shape, f[IMAGES].size
                self.attrs = dict(f.attrs)
        except OSError as e:
            raise UsageError(f"{self.path}: cannot read as HDF5: {e}") from None
        super().__init__(torch.from_numpy(labels), DataSpec(tuple(shape[1:]), len(self.class_names)), shard)
        self.cache = nbytes <= CACHE_LIMIT if cache is None else cache
        self._file: h5py.File | None = None
        self._pid = -1
        self._images: torch.Tensor | None = None

    def _h5(self) -> h5py.Dataset:
        """/images through this process's own handle (reopened after a fork)."""
        if self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file[IMAGES]

    def uint8(self, idx: torch.Tensor) -> torch.Tensor:
        """Raw uint8 images at ``idx``, in that order."""
        if self.cache:
            if self._images is None:
                self._images = torch.from_numpy(self._h5()[()])
            return self._images[idx]
        uniq, inverse = np.unique(idx.numpy(), return_inverse=True)
        images = self._h5()
        rows = np.stack([images[i] for i in uniq.tolist()])
        return torch.from_numpy(rows)[torch.from_numpy(inverse)]

    def fetch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.uint8(idx).to(torch.float32).div_(127.5).sub_(1.0), self.labels[idx]


@DATASETS.register("h5")
def h5(arg: str = "", shard: str = "even") -> H5Dataset:
    """``h5:PATH``: a file written by ``data_prep/prepare.py``."""
    if not arg:
        raise UsageError("--data h5 needs a file: --data h5:PATH (e.g. h5:data/cifar10.h5)")
    return H5Dataset(arg, shard)
