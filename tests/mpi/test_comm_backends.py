"""The same inputs and compressor give the bit-identical aggregate on mpi, torch and horovod."""
import pytest
import torch
from mpi4py import MPI

from helpers import assert_all
from hpcgan.comm import BACKENDS, build_communicator
from hpcgan.compress import COMPRESSORS, build_compressor
from hpcgan.config import CommConfig
from hpcgan.errors import UsageError
from hpcgan.exchange import collect

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD


def available():
    comms, missing = {}, {}
    for name in BACKENDS:
        try:
            comms[name] = build_communicator(CommConfig(backend=name), COMM)
        except UsageError as e:
            missing[name] = str(e)
    return comms, missing


@pytest.mark.parametrize("name", COMPRESSORS.names())
def test_aggregate_identical_on_every_backend(name):
    comms, _ = available()
    assert {"mpi", "torch"} <= set(comms)  # horovod joins when built (see the test below)
    x = torch.randn(1001, generator=torch.Generator().manual_seed(COMM.rank))
    results = {}
    for backend, comm in comms.items():
        c = build_compressor(CommConfig(compressor=name, compressor_options={"ratio": 0.05, "levels": 4}))
        if name == "qsgd":
            c.seed = COMM.rank
        payload, ctx = c.compress(x, [1000, 1])
        results[backend] = collect(comm, c, payload, ctx)
    ref = results["mpi"]
    for backend, y in results.items():
        assert_all(torch.equal(y, ref), f"{name}: {backend} differs from mpi")


def test_every_backend_is_available():
    """Skips (with the reason) where Horovod could not be built, so the identity test above covers
    only mpi and torch there."""
    _, missing = available()
    if missing:
        pytest.skip("; ".join(f"{k}: {v}" for k, v in missing.items()))
