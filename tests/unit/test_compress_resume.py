"""Stateful compressors in a DQGAN run (1 rank, in process): --resume ends bit-identical to an
uninterrupted run, so PowerSGD's warm start and the counters of randk and qsgd are checkpointed."""
import pytest
import torch
from mpi4py import MPI

from hpcgan.config import RunConfig
from hpcgan.train import Trainer, checkpoint_path
from hpcgan.world import init_world


@pytest.fixture(scope="module")
def world():
    return init_world(MPI.COMM_SELF, set_threads=False)


def cfg_for(out, compressor: str, **run) -> RunConfig:
    return RunConfig().replace(
        algo={"algo": "dqgan"}, optim={"optimizer": "oadam", "lr": 1e-3},
        comm={"compressor": compressor, "ratio": 0.1, "levels": 4}, data={"batch_size": 16},
        model={"width": 32, "z_dim": 4},
        run={"out": str(out), "steps": 12, "ckpt_every": 6, "flush_every": 6, "log_every": 1000,
             "eval_samples": 200, **run})


@pytest.mark.parametrize("compressor", ["powersgd", "qsgd", "randk"])
def test_resumed_run_with_a_stateful_compressor_ends_bit_identical(tmp_path, world, compressor):
    straight = cfg_for(tmp_path / "straight.h5", compressor)
    Trainer(straight, world).run()
    part = cfg_for(tmp_path / "part.h5", compressor, steps=6)
    Trainer(part, world).run()
    Trainer(part.replace(run={"steps": 12, "resume": True}), world).run()
    a, b = (torch.load(checkpoint_path(c, 0), weights_only=False)["algorithm"] for c in (straight, part))
    assert torch.equal(a["params"], b["params"])
    ca, cb = a["exchange"]["compressors"], b["exchange"]["compressors"]
    assert ca.keys() == cb.keys() != set() and all(ca[k].keys() == cb[k].keys() != set() for k in ca)
    ra, rb = a["exchange"]["memory"], b["exchange"]["memory"]
    assert ra.keys() == rb.keys() != set() and all(torch.equal(ra[k], rb[k]) for k in ra)
