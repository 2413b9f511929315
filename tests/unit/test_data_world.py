import pytest
import torch
from mpi4py import MPI

from hpcgan.data import build_dataset
from hpcgan.errors import UsageError
from hpcgan.world import init_world, rank_seed


def test_loader_streams_are_per_rank_and_restorable():
    ds = build_dataset("mog8")
    a, b = ds.loader(32, 0, 2, seed=5), ds.loader(32, 1, 2, seed=5)
    xa, _ = next(a)
    assert not torch.equal(xa, next(b)[0])
    assert torch.equal(xa, next(ds.loader(32, 0, 2, seed=5))[0])
    state = a.state_dict()
    want = next(a)
    a.load_state_dict(state)
    got = next(a)
    assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])


def test_label_view_only_yields_those_labels():
    ds = build_dataset("mog25")
    _, y = next(ds.loader(500, 0, 1, seed=0, labels=[3, 7]))
    assert set(y.tolist()) == {3, 7}


def test_unknown_dataset():
    with pytest.raises(UsageError, match="mog8"):
        build_dataset("cifar11")


def test_rank_seeds_are_distinct_and_stable():
    seeds = {rank_seed(0, r, s) for r in range(4) for s in ("data", "noise")}
    assert len(seeds) == 8 and rank_seed(1, 2, "x") == rank_seed(1, 2, "x")


def test_world_on_a_single_process():
    w = init_world(MPI.COMM_SELF, set_threads=False)
    assert (w.rank, w.size, w.local_rank, w.local_size) == (0, 1, 0, 1)
    assert w.device.type in ("cpu", "cuda") and w.threads >= 1


def test_digits_shape_range_and_labels():
    ds = build_dataset("digits")
    assert ds.images.shape == (1797, 1, 32, 32) and ds.spec.num_classes == 10
    assert ds.images.min() >= -1 and ds.images.max() <= 1 and set(ds.labels.tolist()) == set(range(10))


@pytest.mark.parametrize("size", [2, 3])
def test_even_shards_are_disjoint_and_equal(size):
    ds = build_dataset("digits")
    loaders = [ds.loader(7, r, size, seed=1) for r in range(size)]
    shards = [set(l.shard.tolist()) for l in loaders]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == 1797 // size
    assert all(a.isdisjoint(b) for i, a in enumerate(shards) for b in shards[i + 1:])


def test_uneven_shards_cover_everything_and_epochs_reshuffle():
    from hpcgan.data import ArrayDataset
    d = build_dataset("digits")
    ds = ArrayDataset(d.images, d.labels, 10, shard="uneven")
    loaders = [ds.loader(5, r, 3, seed=1) for r in range(3)]
    assert set().union(*(set(l.shard.tolist()) for l in loaders)) == set(range(1797))
    l0 = loaders[0]
    first = l0.shard.clone()
    for _ in range(len(first) // 5 + 1):
        next(l0)
    assert l0.epoch == 1 and not torch.equal(first, l0.shard)


def test_array_loader_resumes_mid_epoch():
    ds = build_dataset("digits")
    a = ds.loader(64, 1, 2, seed=3)
    for _ in range(20):
        next(a)
    state = a.state_dict()
    want = next(a)
    b = ds.loader(64, 1, 2, seed=3)
    b.load_state_dict(state)
    assert torch.equal(next(b)[0], want[0])


def test_threads_per_rank():
    from hpcgan.world import threads_per_rank
    assert threads_per_rank(usable=2, node_cores=2, local_size=4) == 1   # oversubscribed
    assert threads_per_rank(usable=64, node_cores=64, local_size=4) == 16  # shared node
    assert threads_per_rank(usable=7, node_cores=64, local_size=8) == 7    # bound by the launcher


def test_labels_restricts_a_mixture_to_its_first_k_modes():
    full, ds = build_dataset("mog25"), build_dataset("mog25", labels=3)
    assert ds.spec.num_classes == 3 and torch.equal(ds.centers, full.centers[:3])
    x, y = next(ds.loader(500, 0, 1, seed=2))
    assert set(y.tolist()) == {0, 1, 2} and x.shape == (500, 2)
    assert build_dataset("mog8", labels=8).spec.num_classes == 8  # K = all labels: unchanged
    assert build_dataset("mog8", labels=0).spec.num_classes == 8


def test_labels_restricts_digits_to_classes_below_k():
    full, ds = build_dataset("digits"), build_dataset("digits", labels=4)
    keep = full.labels < 4
    assert ds.spec.num_classes == 4 and set(ds.labels.tolist()) == {0, 1, 2, 3}
    assert torch.equal(ds.images, full.images[keep]) and len(ds.labels) == int(keep.sum())
    shards = [set(ds.loader(8, r, 2, seed=1).shard.tolist()) for r in range(2)]
    assert len(shards[0]) == len(ds.labels) // 2 and shards[0].isdisjoint(shards[1])
    _, y = next(ds.loader(300, 1, 2, seed=1))
    assert int(y.max()) < 4


@pytest.mark.parametrize("k", [11, -1])
def test_labels_beyond_the_dataset_are_a_usage_error(k):
    with pytest.raises(UsageError, match="has 10 labels"):
        build_dataset("digits", labels=k)


def test_mixtures_take_their_standard_deviation_as_an_argument():
    assert build_dataset("mog8").sigma == 0.02 and build_dataset("mog8:0.1").sigma == 0.1
    assert build_dataset("mog25:0.2").sigma == 0.2
    for bad in ("mog8:0", "mog8:-1", "mog8:nan", "mog8:wide"):
        with pytest.raises(UsageError, match="positive number"):
            build_dataset(bad)
