"""Distributed evaluation equals the single-process computation on the same samples."""
import numpy as np
import pytest
import torch
from mpi4py import MPI

from helpers import assert_all
from hpcgan.data import ArrayDataset
from hpcgan.metrics import share
from hpcgan.metrics.image import ImageEvaluator
from hpcgan.metrics.proxy import Classifier, ProxyExtractor
from hpcgan.metrics.reference import reference_stats

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD


def setup(tmp_path_factory, monkeypatch):
    """Same dataset, same randomly initialised extractor and same 90 'generated' samples on every rank."""
    cache = COMM.bcast(str(tmp_path_factory.mktemp("cache")) if COMM.rank == 0 else None)
    monkeypatch.setenv("HPCGAN_CACHE", cache)
    g = torch.Generator().manual_seed(0)
    ds = ArrayDataset(torch.rand(50, 1, 16, 16, generator=g) * 2 - 1, torch.arange(50) % 3, num_classes=3)
    torch.manual_seed(1)
    ex = ProxyExtractor(Classifier(1, 3, width=8), "random-extractor")
    fake = torch.rand(90, 1, 16, 16, generator=g) * 2 - 1
    labels = torch.arange(90) % 3
    return ds, ex, fake, labels, cache


def test_distributed_metrics_equal_the_single_process_ones(tmp_path_factory, monkeypatch):
    ds, ex, fake, labels, cache = setup(tmp_path_factory, monkeypatch)
    n = len(fake)
    lo = sum(share(n, r, COMM.size) for r in range(COMM.rank))
    mine = slice(lo, lo + share(n, COMM.rank, COMM.size))
    pos = {"at": mine.start}

    def sample_mine(k):  # this rank's contiguous part of the global sample, in chunks
        i = pos["at"]
        pos["at"] += k
        return fake[i:i + k], labels[i:i + k]

    dist = ImageEvaluator(ds, [ex], chunk=7).evaluate(sample_mine, n, COMM)
    # single process, on its own cache folder, all samples at once
    monkeypatch.setenv("HPCGAN_CACHE", f"{cache}/self{COMM.rank}")
    single = ImageEvaluator(ds, [ex]).evaluate(lambda k: (fake[:k], labels[:k]), n, MPI.COMM_SELF)
    ok = dist.keys() == single.keys() and all(np.isclose(dist[k], single[k], rtol=1e-9, atol=1e-9) for k in dist)
    assert_all(ok, f"distributed {dist} != single-process {single}")
    same = COMM.allgather(dist)
    assert_all(all(d == same[0] for d in same), "every rank returns the same metrics")


def test_distributed_reference_statistics_equal_the_single_process_ones(tmp_path_factory, monkeypatch):
    ds, ex, _, _, cache = setup(tmp_path_factory, monkeypatch)
    dist = reference_stats(ds, ex, COMM)
    monkeypatch.setenv("HPCGAN_CACHE", f"{cache}/self{COMM.rank}")
    single = reference_stats(ds, ex, MPI.COMM_SELF)
    ok = dist.n == single.n == 50 and np.allclose(dist.s, single.s, rtol=1e-12) and np.allclose(dist.q, single.q, rtol=1e-12)
    assert_all(ok, "reference statistics differ")


def test_a_collective_sampler_is_called_as_often_on_every_rank(tmp_path_factory, monkeypatch):
    """Shares of 46 and 45 samples in chunks of 45: rank 0 needs two chunks, rank 1 one; a sampler
    that communicates (pcwgan, cwgan) must still be called the same number of times everywhere."""
    ds, ex, fake, labels, _ = setup(tmp_path_factory, monkeypatch)
    calls = []

    def collective(k):
        calls.append(COMM.allreduce(k))  # hangs if one rank stops calling
        return fake[:k], labels[:k]

    got = ImageEvaluator(ds, [ex], chunk=45).evaluate(collective, 91, COMM)
    assert_all(len(COMM.allgather(len(calls))) == COMM.size and len(set(COMM.allgather(len(calls)))) == 1,
               "same number of calls")
    assert_all(sum(calls) == 91 and "proxy_is" in got, f"calls {calls}")
