"""data_prep/prepare.py on inputs generated in the exact real formats, checked pixel for pixel."""
import hashlib
import pickle
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from data_prep import prepare  # noqa: E402
from helpers import make_cifar10  # noqa: E402  (tests/ is on sys.path)
from hpcgan.data.writer import atomic_output  # noqa: E402

RNG = np.random.default_rng(7)


def dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_cifar100(root: Path, n: int = 40) -> dict:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    made = {}
    for name in ("train", "test"):
        x = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = RNG.integers(0, 100, n).tolist()
        coarse = [f // 5 for f in fine]
        dump(d / name, {b"filenames": [f"{name}_{j}.png".encode() for j in range(n)],
                        b"batch_label": f"{name} batch".encode(), b"fine_labels": fine,
                        b"coarse_labels": coarse, b"data": x})
        made[name] = (x, fine, coarse)
    dump(d / "meta", {b"fine_label_names": [f"fine{c}".encode() for c in range(100)],
                      b"coarse_label_names": [f"coarse{c}".encode() for c in range(20)]})
    return made


def expected(x: np.ndarray, y) -> tuple[np.ndarray, np.ndarray]:
    """What the file must hold: images as (N, 3, 32, 32), stably grouped by label."""
    y = np.asarray(y)
    order = np.argsort(y, kind="stable")
    return x.reshape(-1, 3, 32, 32)[order], y[order]


def run(*args: str) -> int:
    return prepare.main([*args, "--quiet"])


def test_cifar10_train_and_test_pixel_for_pixel(tmp_path):
    made = make_cifar10(tmp_path / "src")
    out = tmp_path / "c10.h5"
    assert run("cifar10", str(tmp_path / "src"), "--out", str(out)) == 0
    x = np.concatenate([made[f"data_batch_{k}"][0] for k in range(1, 6)])
    y = sum((made[f"data_batch_{k}"][1] for k in range(1, 6)), [])
    want_x, want_y = expected(x, y)
    files = [tmp_path / "src/cifar-10-batches-py" / n for n in [f"data_batch_{k}" for k in range(1, 6)] + ["batches.meta"]]
    with h5py.File(out) as f:
        assert f["images"].dtype == np.uint8 and np.array_equal(f["images"][()], want_x)
        assert f["labels"].dtype == np.int64 and np.array_equal(f["labels"][()], want_y)
        assert np.array_equal(f["label_index"][()], np.r_[0, np.cumsum(np.bincount(want_y, minlength=10))])
        assert [s.decode() for s in f["class_names"][()]] == [f"class{c}" for c in range(10)]
        assert f["images"].chunks[1:] == (3, 32, 32)
        a = f.attrs
        assert (a["source"], a["split"], a["size"], a["md5_published"]) == ("cifar10", "train", 32, False)
        assert a["checksum"] == hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
        assert "created_at" in a
    test_out = tmp_path / "c10_test.h5"
    assert run("cifar10", str(tmp_path / "src/cifar-10-batches-py"), "--split", "test", "--out", str(test_out)) == 0
    with h5py.File(test_out) as f:
        want_x, want_y = expected(*made["test_batch"])
        assert np.array_equal(f["images"][()], want_x) and np.array_equal(f["labels"][()], want_y)


@pytest.mark.parametrize("coarse", [False, True])
def test_cifar100_fine_and_coarse(tmp_path, coarse):
    made = make_cifar100(tmp_path)
    out = tmp_path / "c100.h5"
    assert run("cifar100", str(tmp_path), "--out", str(out), *(["--coarse"] if coarse else [])) == 0
    x, fine, coarse_y = made["train"]
    want_x, want_y = expected(x, coarse_y if coarse else fine)
    with h5py.File(out) as f:
        assert np.array_equal(f["images"][()], want_x) and np.array_equal(f["labels"][()], want_y)
        assert len(f["class_names"]) == (20 if coarse else 100)
        assert f["class_names"][0].decode() == ("coarse0" if coarse else "fine0")


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_truncated_pickle_is_named_and_leaves_nothing(tmp_path, capsys):
    make_cifar10(tmp_path / "src")
    bad = tmp_path / "src/cifar-10-batches-py/data_batch_3"
    bad.write_bytes(bad.read_bytes()[:500])
    (tmp_path / "out").mkdir()
    assert run("cifar10", str(tmp_path / "src"), "--out", str(tmp_path / "out/c.h5")) == 2
    assert "data_batch_3" in capsys.readouterr().err
    assert leftovers(tmp_path / "out") == []


class Payload:
    """Unpickling this calls os.system: it writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["batch", "meta", "nested"])
def test_a_crafted_pickle_runs_no_code_and_is_one_line(tmp_path, capsys, where):
    make_cifar10(tmp_path / "src")
    d, marker = tmp_path / "src/cifar-10-batches-py", tmp_path / "ran"
    name = {"batch": "data_batch_2", "meta": "batches.meta", "nested": "data_batch_4"}[where]
    payload = Payload(marker)
    dump(d / name, {b"data": [payload]} if where == "nested" else payload)
    assert run("cifar10", str(tmp_path / "src"), "--out", str(tmp_path / "c.h5")) == 2
    assert not marker.exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and "posix.system" in err and "could run code" in err, err
    assert not (tmp_path / "c.h5").exists()


def test_the_plain_unpickler_reads_plain_data_and_arrays_of_every_protocol(tmp_path):
    from hpcgan.data.pickles import load_plain

    value = {b"a": [1, 2.5, None, True, "s", b"b", (3,), {4}, frozenset({5}), bytearray(b"x"), 1j],
             "arr": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.int64(7), "u": np.array(["x"])}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        (tmp_path / "p").write_bytes(pickle.dumps(value, protocol=protocol))
        got = load_plain(tmp_path / "p")
        assert got.keys() == value.keys() and got[b"a"] == value[b"a"] and got["s"] == 7
        assert np.array_equal(got["arr"], value["arr"]) and got["arr"].dtype == np.float32


def test_missing_files_are_named(tmp_path, capsys):
    make_cifar10(tmp_path / "src")
    (tmp_path / "src/cifar-10-batches-py/data_batch_5").unlink()
    assert run("cifar10", str(tmp_path / "src"), "--out", str(tmp_path / "c.h5")) == 2
    assert "data_batch_5" in capsys.readouterr().err
    assert run("cifar100", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c.h5")) == 2
    assert "nowhere" in capsys.readouterr().err and not (tmp_path / "c.h5").exists()


def test_existing_output_needs_force(tmp_path, capsys):
    make_cifar10(tmp_path / "src")
    out = tmp_path / "c.h5"
    out.write_bytes(b"precious")
    assert run("cifar10", str(tmp_path / "src"), "--out", str(out)) == 2
    assert str(out) in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert run("cifar10", str(tmp_path / "src"), "--out", str(out), "--force") == 0
    assert h5py.is_hdf5(out)


def test_a_failure_inside_the_writer_removes_the_temporary_file(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "x.h5", force=False) as f:
            f.create_dataset("images", data=np.zeros(3))
            raise RuntimeError("conversion failed half way")
    assert leftovers(tmp_path) == []


def make_imagenet(root: Path) -> list[tuple[Path, int]]:
    """train/<wnid>/*.JPEG: real JPEGs of mixed sizes and modes, plus one corrupt and one text file."""
    sizes = {"n01440764": [(50, 40, "RGB"), (33, 70, "RGB"), (64, 64, "L")],
             "n01443537": [(90, 45, "RGB"), (40, 41, "CMYK")]}
    good = []
    for label, (wnid, shapes) in enumerate(sorted(sizes.items())):
        d = root / "train" / wnid
        d.mkdir(parents=True)
        for k, (w, h, mode) in enumerate(shapes):
            px = RNG.integers(0, 256, (h, w) if mode == "L" else (h, w, 3), dtype=np.uint8)
            p = d / f"{wnid}_{k}.JPEG"
            Image.fromarray(px, "L" if mode == "L" else "RGB").convert(mode).save(p, "JPEG", quality=90)
            good.append((p, label))
    (root / "train/n01440764/n01440764_9.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "train/n01443537/n01443537_9.JPEG").write_text("a text file with an image name")
    return sorted(good)


def test_imagenet_resized_cropped_and_bad_files_skipped(tmp_path, capsys):
    import torchvision.transforms as T

    good = make_imagenet(tmp_path / "in")
    out = tmp_path / "in32.h5"
    assert run("imagenet", str(tmp_path / "in"), "--out", str(out), "--size", "32", "--workers", "2") == 0
    err = capsys.readouterr().err
    assert "skipped 2 of 7" in err and "n01440764_9.JPEG" in err and "n01443537_9.JPEG" in err
    ref = T.Compose([T.Resize(32, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32)])
    want = np.stack([np.asarray(ref(Image.open(p).convert("RGB"))).transpose(2, 0, 1) for p, _ in good])
    with h5py.File(out) as f:
        assert np.array_equal(f["images"][()], want)
        assert f["labels"][()].tolist() == [label for _, label in good]
        assert [s.decode() for s in f["class_names"][()]] == ["n01440764", "n01443537"]
        assert f.attrs["skipped"] == 2 and f.attrs["source"] == "imagenet"


def test_imagenet_with_only_bad_files_fails_cleanly(tmp_path, capsys):
    d = tmp_path / "in/train/n0"
    d.mkdir(parents=True)
    (d / "a.JPEG").write_bytes(b"garbage")
    (tmp_path / "out").mkdir()
    assert run("imagenet", str(tmp_path / "in"), "--out", str(tmp_path / "out/x.h5"), "--workers", "1") == 2
    assert "no images" in capsys.readouterr().err and leftovers(tmp_path / "out") == []
    assert run("imagenet", str(tmp_path / "nothing"), "--out", str(tmp_path / "out/x.h5")) == 2
    assert "nothing/train" in capsys.readouterr().err


def test_digits_matches_the_in_memory_dataset(tmp_path):
    from hpcgan.data import build_dataset, digits_images

    out = tmp_path / "digits.h5"
    assert run("digits", "-", "--out", str(out)) == 0
    x, y = digits_images()
    with h5py.File(out) as f:
        order = np.argsort(y.numpy(), kind="stable")
        assert np.array_equal(f["images"][()], (x.numpy()[order] * 255).round().astype(np.uint8))
        assert f["images"].shape == (1797, 1, 32, 32)
    ds, mem = build_dataset(f"h5:{out}"), build_dataset("digits")
    idx = mem.by_label[4][:10]
    got, _ = ds.fetch(ds.by_label[4][:10])
    assert (got - mem.fetch(idx)[0]).abs().max() <= 1 / 255 + 1e-6
