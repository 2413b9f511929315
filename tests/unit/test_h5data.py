"""The ``h5:PATH`` dataset: validation on open, both read paths, views, sharding policy."""
import h5py
import numpy as np
import pytest
import torch

from hpcgan.data import build_dataset
from hpcgan.errors import UsageError
from hpcgan.data.h5 import H5Dataset
from hpcgan.data.writer import write_arrays


def small_file(path, n=60, k=4, channels=3):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, channels, 8, 8), dtype=np.uint8)
    labels = np.arange(n) % k
    write_arrays(path, False, images, labels, [f"c{i}" for i in range(k)], {"source": "test", "split": "x"})
    order = np.argsort(labels, kind="stable")
    return images[order], labels[order]


def test_fetch_gives_floats_in_range_and_both_read_paths_agree(tmp_path):
    images, labels = small_file(tmp_path / "d.h5")
    cached, uncached = H5Dataset(tmp_path / "d.h5", cache=True), H5Dataset(tmp_path / "d.h5", cache=False)
    assert cached.spec.shape == (3, 8, 8) and cached.spec.num_classes == 4 and len(cached) == 60
    idx = torch.tensor([17, 3, 59, 3, 0])  # unsorted, with a repeat
    x, y = uncached.fetch(idx)
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, torch.from_numpy(images[idx.numpy()]).float() / 127.5 - 1)
    assert torch.equal(y, torch.from_numpy(labels[idx.numpy()]))
    assert torch.equal(cached.fetch(idx)[0], x)
    a, b = cached.loader(16, 1, 2, seed=4), uncached.loader(16, 1, 2, seed=4)
    for _ in range(5):  # crosses an epoch boundary (30 samples per rank)
        (xa, ya), (xb, yb) = next(a), next(b)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_label_views_and_shard_policy_from_build_dataset(tmp_path):
    small_file(tmp_path / "d.h5")
    ds = build_dataset(f"h5:{tmp_path / 'd.h5'}", shard="uneven")
    assert ds.shard == "uneven"
    _, y = next(ds.loader(40, 0, 1, seed=0, labels=[1, 3]))
    assert set(y.tolist()) == {1, 3}
    shards = [set(ds.loader(4, r, 7, seed=0).shard.tolist()) for r in range(7)]
    assert set().union(*shards) == set(range(60)) and sum(map(len, shards)) == 60


def corrupt(path, name, data, **kw):
    with h5py.File(path, "a") as f:
        del f[name]
        f.create_dataset(name, data=data, **kw)


@pytest.mark.parametrize("name, data, message", [
    ("images", np.zeros((60, 3, 8, 8), np.float32), "/images must be uint8"),
    ("images", np.zeros((60, 8, 8), np.uint8), "/images must be uint8"),
    ("labels", np.zeros(59, np.int64), "/labels must be int64 of shape"),
    ("labels", np.zeros(60, np.int32), "/labels must be int64"),
    ("labels", np.repeat(np.arange(4), 15) + 1, "must lie in"),
    ("labels", np.tile(np.arange(4), 15), "disagree with /label_index"),
    ("label_index", np.array([0, 15, 30, 60], np.int64), "/label_index must be int64 of shape"),
])
def test_bad_files_are_rejected_naming_the_file(tmp_path, name, data, message):
    path = tmp_path / "bad.h5"
    small_file(path)
    corrupt(path, name, data)
    with pytest.raises(UsageError, match=message) as e:
        H5Dataset(path)
    assert str(path) in str(e.value)


def test_missing_or_non_hdf5_files(tmp_path):
    with pytest.raises(UsageError, match="no such dataset file"):
        build_dataset(f"h5:{tmp_path / 'absent.h5'}")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(UsageError, match="text.h5"):
        build_dataset(f"h5:{tmp_path / 'text.h5'}")
    small_file(tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5", "a") as f:
        del f["class_names"]
    with pytest.raises(UsageError, match="missing dataset /class_names"):
        build_dataset(f"h5:{tmp_path / 'd.h5'}")
    with pytest.raises(UsageError, match="h5:PATH"):
        build_dataset("h5")


def test_labels_restricts_an_h5_file_to_classes_below_k(tmp_path):
    small_file(tmp_path / "d.h5")  # 60 images, labels 0..3
    ds = build_dataset(f"h5:{tmp_path / 'd.h5'}", shard="uneven", labels=2)
    assert ds.spec.num_classes == 2
    shards = [set(ds.loader(4, r, 3, seed=0).shard.tolist()) for r in range(3)]
    every = set().union(*shards)
    assert len(every) == 30 and set(ds.fetch(torch.tensor(sorted(every)))[1].tolist()) == {0, 1}
    with pytest.raises(UsageError, match="labels"):
        ds.loader(4, 0, 1, seed=0, labels=[3])
    with pytest.raises(UsageError, match="has 4 labels"):
        build_dataset(f"h5:{tmp_path / 'd.h5'}", labels=5)
