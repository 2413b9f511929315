"""pcwgan / cwgan pieces on one process: ownership, the P > C error, WGAN variants, selection proxy."""
import pytest
import torch
from mpi4py import MPI

from hpcgan.algorithms import ALGORITHMS, TrainContext
from hpcgan.algorithms.pcwgan import sliced_wasserstein, unit_owners
from hpcgan.gan.losses import LOSSES, AlternatingPair
from hpcgan.comm import build_communicator
from hpcgan.config import RunConfig
from hpcgan.data import DataSpec, build_dataset
from hpcgan.errors import UsageError
from hpcgan.gan.models import build_models
from hpcgan.train import Trainer
from hpcgan.world import init_world

CFG = RunConfig().replace(algo={"algo": "pcwgan"}, data={"batch_size": 8}, model={"width": 16},
                          optim={"lr": 1e-4, "beta2": 0.9})


@pytest.mark.parametrize("classes, replicas, size", [(10, 1, 1), (10, 1, 2), (10, 1, 3), (8, 1, 8), (8, 2, 16),
                                                     (10, 3, 4)])
def test_label_sets_are_disjoint_and_complete(classes, replicas, size):
    owner = unit_owners(classes, replicas, size)
    per_rank = [set((owner == r).nonzero()[0].tolist()) for r in range(size)]
    assert all(per_rank), "every rank owns a unit"
    assert sum(len(s) for s in per_rank) == classes * replicas == len(set().union(*per_rank))
    if replicas == 1:
        assert all(c % size == r for r, s in enumerate(per_rank) for c in s)


def test_more_ranks_than_labels_is_a_usage_error_naming_replicas():
    with pytest.raises(UsageError, match=r"8 labels x 1 replica\(s\) < 9 ranks.*--replicas R with R >= 2"):
        unit_owners(8, 1, 9)
    assert len(unit_owners(8, 2, 9)) == 16


def test_round_robin_gives_every_label_its_share_of_steps():
    world = init_world(MPI.COMM_SELF, set_threads=False)
    comm = build_communicator(CFG.comm, MPI.COMM_SELF)
    algo = ALGORITHMS.get("pcwgan")(TrainContext(CFG, world, comm, build_dataset("mog8")))
    loader = algo.make_loader()
    for t in range(19):
        x, y = next(loader)
        assert set(y.tolist()) == {t % 8} and len(y) == 8 * CFG.optim.n_critic
        algo.step((x, y), t)
    assert [u.steps for u in algo.units] == [3, 3, 3, 2, 2, 2, 2, 2]
    assert comm.calls == 0 and comm.bytes_sent == 0


@pytest.mark.parametrize("loss", ["wgan-gp", "wgan-clip", "ns"])
def test_alternating_losses_write_gradients_and_clip(loss):
    torch.manual_seed(0)
    G, D = build_models(DataSpec((2,), 8), CFG.model)
    pair = AlternatingPair(G, D, LOSSES.get(loss), 10.0)
    real, z = torch.randn(16, 2), torch.randn(16, CFG.model.z_dim)
    d_loss = pair.critic_backward(real, z, (), torch.Generator().manual_seed(0))
    assert torch.isfinite(d_loss) and all(p.grad is not None for p in D.parameters())
    assert sum(float(p.grad.abs().sum()) for p in D.parameters()) > 0
    assert all(p.grad is None for p in G.parameters()), "critic step leaves G alone"
    g_loss = pair.generator_backward(z, ())
    assert torch.isfinite(g_loss) and all(p.grad is not None for p in G.parameters())
    pair.after_critic_update()
    bound = max(p.abs().max() for p in D.parameters())
    assert (bound <= 0.01) == (loss == "wgan-clip")


def test_conditional_mlp_on_images():
    G, D = build_models(DataSpec((1, 8, 8), 10), CFG.model, conditional=True)
    y = torch.arange(4)
    x = G(torch.randn(4, CFG.model.z_dim), y)
    assert x.shape == (4, 1, 8, 8) and D(x, y).shape == (4,)
    assert not torch.equal(D(x, y), D(x, (y + 1) % 10)), "projection critic depends on the label"


def test_sliced_wasserstein_separates_shifted_samples():
    a = torch.randn(256, 5, generator=torch.Generator().manual_seed(1))
    assert sliced_wasserstein(a, a.clone(), 32, 0) == 0
    assert sliced_wasserstein(a, a + 1.0, 32, 0) > sliced_wasserstein(a, a + 0.1, 32, 0) > 0


def test_a_class_without_images_is_one_line_naming_it_and_its_rank(tmp_path):
    """Every rank sees the same data, so every rank raises this line together (no rank waits)."""
    import numpy as np

    from hpcgan.algorithms import resolve_config
    from hpcgan.data.writer import write_arrays

    data = tmp_path / "img.h5"
    labels = np.array([0, 0, 0, 0, 2, 2, 2, 2])  # class 1: none
    write_arrays(data, True, np.zeros((8, 1, 8, 8), dtype=np.uint8), labels, ["a", "b", "c"],
                 {"source": "test", "split": "train"})
    cfg = resolve_config({"algo": "pcwgan", "data": f"h5:{data}", "out": str(tmp_path / "r.h5"), "steps": 2,
                          "batch_size": 2, "width": 8})
    with pytest.raises(UsageError, match=f"^class 1 of h5:{data} has no samples: pcwgan trains its generator on "
                                         "rank 0 from that class alone"):
        Trainer(cfg, init_world(MPI.COMM_SELF, set_threads=False))
