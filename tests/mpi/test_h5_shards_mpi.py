"""h5 shards across real ranks (run at 2 and 3 ranks, see the Makefile): disjoint, and equal in size
under the even policy; every epoch's reshuffle agrees across ranks; batches hold the file's pixels."""
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from mpi4py import MPI

from helpers import assert_all
from hpcgan.data import build_dataset
from hpcgan.data.writer import write_arrays

pytestmark = pytest.mark.mpi(min_size=2)
N, K = 101, 10


@pytest.fixture(scope="module")
def h5file():
    comm = MPI.COMM_WORLD
    tmp = comm.bcast(tempfile.mkdtemp(prefix="hpcgan-h5mpi-") if comm.rank == 0 else None)
    path = Path(tmp) / "d.h5"
    if comm.rank == 0:
        rng = np.random.default_rng(0)
        labels = rng.integers(0, K, N)
        labels[:K] = np.arange(K)  # every class present
        write_arrays(path, False, rng.integers(0, 256, (N, 1, 4, 4), dtype=np.uint8), labels,
                     [str(c) for c in range(K)], {"source": "test", "split": "x"})
    comm.Barrier()
    yield path
    comm.Barrier()
    if comm.rank == 0:
        path.unlink()
        Path(tmp).rmdir()


def gathered_shards(loader):
    return [set(s) for s in MPI.COMM_WORLD.allgather(loader.shard.tolist())]


@pytest.mark.parametrize("policy", ["even", "uneven"])
def test_shards_disjoint_and_even_policy_equal(h5file, policy):
    comm = MPI.COMM_WORLD
    ds = build_dataset(f"h5:{h5file}", shard=policy)
    loader = ds.loader(8, comm.rank, comm.size, seed=11)
    for epoch in range(3):
        shards = gathered_shards(loader)
        sizes = [len(s) for s in shards]
        assert_all(sum(sizes) == len(set().union(*shards)), f"epoch {epoch}: shards overlap")
        if policy == "even":
            assert_all(sizes == [N // comm.size] * comm.size, f"epoch {epoch}: uneven sizes {sizes}")
        else:
            assert_all(set().union(*shards) == set(range(N)), f"epoch {epoch}: samples missing")
        first = loader.shard.clone()
        while loader.epoch == epoch:
            x, y = next(loader)
        assert_all(not torch.equal(first, loader.shard[: len(first)]), "no reshuffle between epochs")


def test_label_view_shards_and_batches_match_the_file(h5file):
    import h5py

    comm = MPI.COMM_WORLD
    ds = build_dataset(f"h5:{h5file}", shard="even")
    loader = ds.loader(5, comm.rank, comm.size, seed=2, labels=[1, 4, 7])
    shards = gathered_shards(loader)
    with h5py.File(h5file) as f:
        images, labels = f["images"][()], f["labels"][()]
    view = set(np.flatnonzero(np.isin(labels, [1, 4, 7])).tolist())
    assert_all(all(s <= view for s in shards) and sum(map(len, shards)) == len(set().union(*shards)),
               "label-view shards overlap or leave the view")
    idx = loader.shard[:5].numpy()
    x, y = next(loader)
    assert_all(np.array_equal(((x + 1) * 127.5).round().to(torch.uint8).numpy(), images[idx])
               and np.array_equal(y.numpy(), labels[idx]), "batch differs from the file")
