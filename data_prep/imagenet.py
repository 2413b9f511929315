"""An ImageNet-style folder (``SRC/<split>/<wnid>/*.JPEG``) -> resized, centre-cropped uint8 images.

Files and classes are listed exactly as torchvision's ``ImageFolder`` lists them (sorted class
folders, sorted files, its image extensions), so labels match ``ImageFolder`` indices. Each image
is converted to RGB, resized so its shorter side is ``size`` (bicubic, the longer side truncated as
``torchvision.transforms.Resize(size)`` does) and centre-cropped to ``size`` x ``size`` (offsets
rounded as ``CenterCrop`` does). Decoding runs in a pool of worker processes; results come back in
order, so the output is the same for any number of workers. A file PIL cannot decode (corrupt,
truncated, not an image) is skipped, counted and reported; it never stops the conversion.
"""
from __future__ import annotations

import hashlib
import io
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from hpcgan.errors import UsageError

BLOCK = 1024  # images appended to the HDF5 file at a time


def resize_crop(img: Image.Image, size: int) -> Image.Image:
    """Shorter side -> ``size`` (bicubic), then the central ``size`` x ``size`` square."""
    w, h = img.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def convert_one(job: tuple[str, int]) -> tuple[str, np.ndarray | None, str]:
    """(SHA-256 of the file, uint8 (3, size, size) or None, error message or "")."""
    path, size = job
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return "", None, f"{type(e).__name__}: {e}"
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = resize_crop(img.convert("RGB"), size)
        return digest, np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy(), ""
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError (truncated), ValueError, ...
        return digest, None, f"{type(e).__name__}: {e}"


def list_images(src: str | Path, split: str) -> tuple[list[tuple[str, int]], list[str]]:
    """ImageFolder's (path, class index) list and class names for ``src/split``."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root = Path(src) / split
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder (expected {Path(src)}/{split}/<class>/*.JPEG)")
    try:
        classes, class_to_idx = find_classes(str(root))
    except FileNotFoundError as e:
        raise UsageError(f"{root}: {e}") from None
    files = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not files:
        raise UsageError(f"{root}: no image files in its class folders")
    return files, classes


def convert(files: list[tuple[str, int]], size: int, workers: int,
            append: Callable[[np.ndarray, np.ndarray], None], progress: bool = True):
    """Decode ``files`` in a pool, calling ``append(images, labels)`` in file order per block.

    Returns (SHA-256 over (relative name, file digest) pairs, [(path, reason) skipped]).
    """
    from tqdm import tqdm

    checksum, skipped = hashlib.sha256(), []
    xs, ys = [], []

    def flush():
        if xs:
            append(np.stack(xs), np.array(ys, dtype=np.int64))
            xs.clear(), ys.clear()

    jobs = [(p, size) for p, _ in files]
    with get_context("fork").Pool(max(1, workers)) as pool, \
            tqdm(total=len(jobs), unit="img", disable=not progress or None, desc="imagenet") as bar:
        for (path, label), (digest, img, err) in zip(files, pool.imap(convert_one, jobs, chunksize=16)):
            checksum.update(f"{Path(path).parent.name}/{Path(path).name}\0{digest}\n".encode())
            if img is None:
                skipped.append((path, err))
            else:
                xs.append(img), ys.append(label)
                if len(xs) == BLOCK:
                    flush()
            bar.update()
    flush()
    return checksum.hexdigest(), skipped
