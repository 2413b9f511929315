"""Each algorithm's part of the final model under N ranks: one copy of a replicated model, DPOSG's
average and rank 0's own, pcwgan's labels from every rank; joined, they sample as the run's model."""
import numpy as np
import pytest
import torch
from mpi4py import MPI

from helpers import assert_all
from hpcgan.algorithms import ALGORITHMS, TrainContext
from hpcgan.comm import build_communicator
from hpcgan.config import RunConfig
from hpcgan.data import build_dataset
from hpcgan.results.model import FinalModel, merge
from hpcgan.world import init_world

pytestmark = pytest.mark.mpi(min_size=2)
COMM = MPI.COMM_WORLD
CFG = RunConfig().replace(data={"batch_size": 8}, model={"width": 16})


def build(algo: str):
    cfg = CFG.replace(algo={"algo": algo})
    world = init_world(COMM, set_threads=False)
    return ALGORITHMS.get(algo)(TrainContext(cfg, world, build_communicator(cfg.comm, COMM), build_dataset("mog8")))


@pytest.mark.parametrize("algo", ["sync", "cwgan"])
def test_a_replicated_model_comes_from_rank_0_alone(algo):
    part = build(algo).final_models()
    assert_all(bool(part) == (COMM.rank == 0), f"{algo}: only rank 0 gives the model")
    kinds = COMM.allgather({k: g.kind for k, g in part.items()})
    assert_all(kinds[0] == {"": "conditional" if algo == "cwgan" else "single"}, str(kinds))


def test_dposg_gives_the_average_and_rank_0s_own_model():
    algo = build("dposg")
    with torch.no_grad():
        algo.flat.params.add_(float(COMM.rank))  # ranks now hold different models
    own = {k: v.clone() for k, v in algo.G.state_dict().items()}
    parts = COMM.allgather(algo.final_models())
    model = merge(parts)
    mean = (COMM.size - 1) / 2  # of the offsets 0, 1, ..., size - 1
    avg_ok = all(torch.allclose(model[""].weights[-1][k], own[k] - COMM.rank + mean, atol=1e-6) for k in own)
    assert_all(avg_ok, "the run's model is the average of the ranks' models")
    rank0 = COMM.bcast(own, root=0)
    assert_all(all(torch.equal(model["rank0"].weights[-1][k], rank0[k]) for k in own), "rank0 is rank 0's own")
    assert_all(all(torch.equal(algo.G.state_dict()[k], own[k]) for k in own), "the rank keeps its own model")


def test_pcwgan_parts_from_every_rank_make_the_conditional_model():
    algo = build("pcwgan")
    part = algo.final_models()
    mine = sorted(part[""].weights) if part else []
    assert_all(mine == [c for c in range(8) if c % COMM.size == COMM.rank], f"rank {COMM.rank} gives {mine}")
    model = merge(COMM.allgather(part))
    same = True
    for c in range(8):  # label c's generator is its owner's, bit for bit
        unit = algo._local(c)
        ref = COMM.bcast(unit.G.state_dict() if unit is not None else None, root=c % COMM.size)
        same &= all(torch.equal(model[""].weights[c][k], v) for k, v in ref.items())
    assert_all(same, "joined generators are the owners' own")
    x, y = FinalModel(CFG, 0, model, "d", "test").sampler("", algo.ctx.dataset.spec).draw(np.arange(16))
    assert_all(x.shape == (16, 2) and torch.bincount(y, minlength=8).tolist() == [2] * 8, "every label twice")
