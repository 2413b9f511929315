"""Convert an image dataset once into hpcgan's HDF5 format (read with ``--data h5:PATH``).

    python data_prep/prepare.py cifar10  SRC --out data/cifar10.h5   [--split train|test]
    python data_prep/prepare.py cifar100 SRC --out data/cifar100.h5  [--coarse]
    python data_prep/prepare.py imagenet SRC --out data/imagenet32.h5 --size 32 [--workers N]
    python data_prep/prepare.py digits   -   --out data/digits.h5

SRC is the folder holding ``cifar-10-batches-py/`` / ``cifar-100-python/`` (or that folder
itself), or the ImageNet root holding ``train/<wnid>/*.JPEG``; digits ignores it (scikit-learn's
bundled copy). The output is written under a temporary name and renamed when complete; an
existing output needs ``--force``. Exit status 2 on bad input, with a message naming the file.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `data_prep` and `hpcgan` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep import cifar, imagenet  # noqa: E402
from hpcgan.data.writer import ImageWriter, atomic_output, sha256_files, write_arrays  # noqa: E402
from hpcgan.errors import UsageError  # noqa: E402


def prepare_cifar(args) -> Path:
    files = cifar.input_files(args.dataset, args.src, args.split)
    images, labels, names = cifar.load(args.dataset, args.src, args.split, args.coarse)
    attrs = {"source": args.dataset + ("-coarse" if args.coarse else ""), "split": args.split,
             "checksum": sha256_files(files), "md5_published": cifar.published_md5(args.dataset, files)}
    return write_arrays(args.out, args.force, images, labels, names, attrs)


def prepare_digits(args) -> Path:
    """The images of ``--data digits`` (shared code), quantized to uint8."""
    import torch
    from hpcgan.data import digits_images

    x, y = digits_images()
    images, labels = (x * 255).round().to(torch.uint8).numpy(), y.numpy()
    checksum = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()  # of the bundled arrays
    attrs = {"source": "digits", "split": "all", "checksum": checksum}
    return write_arrays(args.out, args.force, images, labels, [str(i) for i in range(10)], attrs)


def prepare_imagenet(args) -> Path:
    files, classes = imagenet.list_images(args.src, args.split)
    with atomic_output(args.out, args.force) as f:
        w = ImageWriter(f, (3, args.size, args.size))
        checksum, skipped = imagenet.convert(files, args.size, args.workers, w.append, progress=not args.quiet)
        if skipped:
            print(f"prepare: skipped {len(skipped)} of {len(files)} file(s) that are not readable images:",
                  file=sys.stderr)
            for path, why in skipped:
                print(f"  {path}: {why}", file=sys.stderr)
        w.finish(classes, {"source": "imagenet", "split": args.split, "checksum": checksum,
                           "skipped": len(skipped)})
    return Path(args.out)


PREPARE = {"cifar10": prepare_cifar, "cifar100": prepare_cifar, "imagenet": prepare_imagenet,
           "digits": prepare_digits}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prepare.py", description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=sorted(PREPARE))
    p.add_argument("src", help="input folder (ignored for digits; pass -)")
    p.add_argument("--out", required=True, help="output HDF5 file, e.g. data/cifar10.h5")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--split", default="train", choices=("train", "test"), help="which split (default train)")
    p.add_argument("--size", type=int, default=32, help="imagenet: output side in pixels (default 32)")
    p.add_argument("--coarse", action="store_true", help="cifar100: the 20 superclasses instead of 100")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                   help="imagenet: decoding processes (default: usable cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.size < 1:
            raise UsageError("--size must be >= 1")
        out = PREPARE[args.dataset](args)
    except UsageError as e:
        print(f"prepare: error: {e}", file=sys.stderr)
        return 2
    import h5py
    with h5py.File(out, "r") as f:
        print(f"{out}: {f.attrs['count']} images {f['images'].shape[1:]} in {len(f['class_names'])} "
              f"classes, source={f.attrs['source']} split={f.attrs['split']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
