"""CIFAR-10 / CIFAR-100 "python version" pickle batches -> arrays.

The files are read directly with the keys torchvision's ``CIFAR10``/``CIFAR100`` read (``data``,
``labels`` / ``fine_labels`` / ``coarse_labels``, ``label_names`` / ``fine_label_names`` /
``coarse_label_names``) rather than through those classes: their constructor refuses any file
whose MD5 differs from the published archive, which rules out the generated test files and
sub-sampled copies, and they expose no coarse labels. Whether the inputs match the published MD5s
is still recorded (attribute ``md5_published``). Pickles are read as plain data only
(:func:`hpcgan.data.pickles.load_plain`: a crafted file runs no code), with ``encoding="bytes"``, as
the CIFAR page recommends, so keys are ``bytes`` for the original Python 2 files and for new ones.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hpcgan.data.pickles import load_plain
from hpcgan.errors import UsageError

LAYOUT = {  # name -> (standard folder, {split: batch files}, meta file)
    "cifar10": ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)],
                                        "test": ["test_batch"]}, "batches.meta"),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "meta"),
}


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"{path}: missing CIFAR file")
    obj = load_plain(path, encoding="bytes", what="CIFAR pickle")  # plain data only: loading runs no code
    if not isinstance(obj, dict):
        raise UsageError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _get(d: dict, key: str, path: Path):
    try:
        return d[key.encode()]
    except KeyError:
        raise UsageError(f"{path}: no key b'{key}' (keys: {sorted(d)})") from None


def find_root(name: str, src: str | Path) -> Path:
    """``src`` itself or ``src/<standard folder>``, whichever holds the meta file."""
    folder, _, meta = LAYOUT[name]
    src = Path(src)
    for root in (src, src / folder):
        if (root / meta).is_file():
            return root
    raise UsageError(f"{src / folder / meta}: missing CIFAR file (expected {folder}/ under {src} or {src} itself)")


def input_files(name: str, src: str | Path, split: str) -> list[Path]:
    root = find_root(name, src)
    _, splits, meta = LAYOUT[name]
    return [root / f for f in splits[split]] + [root / meta]


def load(name: str, src: str | Path, split: str, coarse: bool = False):
    """(images uint8 (N, 3, 32, 32), labels int64 (N,), class names) in file order."""
    if coarse and name != "cifar100":
        raise UsageError("--coarse applies to cifar100 only")
    *batches, meta_path = input_files(name, src, split)
    label_key = "labels" if name == "cifar10" else ("coarse_labels" if coarse else "fine_labels")
    names_key = "label_names" if name == "cifar10" else ("coarse_label_names" if coarse else "fine_label_names")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _get(_unpickle(meta_path), names_key, meta_path)]
    xs, ys = [], []
    for path in batches:
        batch = _unpickle(path)
        x, y = np.asarray(_get(batch, "data", path)), np.asarray(_get(batch, label_key, path))
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
            raise UsageError(f"{path}: b'data' must be uint8 (N, 3072) with N labels; "
                             f"got {x.dtype} {x.shape} and {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= len(names)):
            raise UsageError(f"{path}: labels outside [0, {len(names)}) for the {len(names)} classes in {meta_path}")
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys), names


def published_md5(name: str, files: list[Path]) -> bool:
    """True when every input matches torchvision's published MD5 for that file name."""
    from torchvision.datasets import CIFAR10, CIFAR100
    from torchvision.datasets.utils import check_integrity

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    known = dict(cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]])
    return all(p.name in known and check_integrity(str(p), known[p.name]) for p in files)
