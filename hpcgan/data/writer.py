"""Writing the hpcgan image file format (see :mod:`hpcgan.data.h5`) atomically; used by
``data_prep/prepare.py`` and by ``hpcgan bench data`` for its synthetic file.

:func:`atomic_output` yields an open HDF5 file under a temporary name next to the output and
renames it into place only when the body finished; any failure (or Ctrl-C) deletes it, so a failed
conversion leaves no half-written output. :class:`ImageWriter` appends image blocks and writes the
labels, the per-class offsets and the attributes at the end.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np

from ..errors import UsageError
from .h5 import CLASS_NAMES, IMAGES, LABEL_INDEX, LABELS, check_file

#: Target bytes per HDF5 chunk; a chunk always holds whole images (5 CIFAR images, 1 at 64x64).
#: Small chunks make the per-image reads of uncached files cheap (see hpcgan.data.h5).
CHUNK_BYTES = 16 * 1024


@contextmanager
def atomic_output(out: str | Path, force: bool) -> Iterator[h5py.File]:
    out = Path(out)
    if out.exists() and not force:
        raise UsageError(f"{out} already exists; pass --force to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ImageWriter:
    """Appends (images, labels) blocks with non-decreasing labels to /images and /labels."""

    def __init__(self, f: h5py.File, shape: tuple[int, int, int]):
        self.f, self.shape = f, tuple(shape)
        block = max(1, CHUNK_BYTES // int(np.prod(shape)))
        self.images = f.create_dataset(IMAGES, shape=(0, *shape), maxshape=(None, *shape),
                                       dtype=np.uint8, chunks=(block, *shape))
        self.labels: list[np.ndarray] = []
        self.n = 0

    def append(self, images: np.ndarray, labels: np.ndarray) -> None:
        images, labels = np.asarray(images), np.asarray(labels, dtype=np.int64)
        assert images.dtype == np.uint8 and images.shape[1:] == self.shape and len(images) == len(labels)
        self.images.resize(self.n + len(images), axis=0)
        self.images[self.n:] = images
        self.labels.append(labels)
        self.n += len(images)

    def finish(self, class_names: list[str], attrs: dict) -> None:
        """Write /labels, /label_index, /class_names and attrs; check the result like a reader."""
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0, np.int64)
        if self.n == 0:
            raise UsageError(f"{attrs.get('source', 'input')}: no images to write")
        if np.any(np.diff(labels) < 0):
            raise ValueError("ImageWriter needs images grouped by class (non-decreasing labels)")
        counts = np.bincount(labels, minlength=len(class_names))
        self.f.create_dataset(LABELS, data=labels)
        self.f.create_dataset(LABEL_INDEX, data=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        self.f.create_dataset(CLASS_NAMES, data=np.array(class_names, dtype=object),
                              dtype=h5py.string_dtype())
        self.f.attrs.update({**attrs, "size": self.shape[-1], "count": self.n,
                             "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        check_file(self.f, self.f.filename)


def write_arrays(out: str | Path, force: bool, images: np.ndarray, labels: np.ndarray,
                 class_names: list[str], attrs: dict) -> Path:
    """Whole in-memory arrays (CIFAR, digits) -> ``out``, stably sorted by label."""
    order = np.argsort(labels, kind="stable")
    with atomic_output(out, force) as f:
        w = ImageWriter(f, images.shape[1:])
        w.append(images[order], labels[order])
        w.finish(class_names, attrs)
    return Path(out)


def sha256_files(paths: Iterable[str | Path]) -> str:
    """SHA-256 over the bytes of ``paths`` in order (the inputs' checksum attribute)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
