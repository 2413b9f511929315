"""The resource check before training: a run that cannot fit in its device's memory is refused in
one line before any model is built; the estimate is a lower bound that grows with width and batch."""
import pytest
from mpi4py import MPI

from hpcgan import resources
from hpcgan.algorithms import resolve_config
from hpcgan.data import build_dataset
from hpcgan.errors import UsageError
from hpcgan.train import Trainer
from hpcgan.world import init_world


def cfg(tmp_path, **flags):
    return resolve_config({"algo": "sync", "out": str(tmp_path / "r.h5"), "steps": 2, **flags})


@pytest.mark.parametrize("flags, kind", [({"width": 200_000}, r"parameters and gradients 1\d\d\d\.\d"),
                                         ({"batch_size": 100_000_000}, r"activations of a --batch-size 100000000 "
                                                                       r"batch \d\d\d\.\d")])
def test_a_run_that_cannot_fit_is_one_line_before_anything_is_allocated(tmp_path, flags, kind):
    with pytest.raises(UsageError, match=f"^this run needs at least .*{kind}.* GiB available") as e:
        Trainer(cfg(tmp_path, **flags), init_world(MPI.COMM_SELF, set_threads=False))
    assert len(str(e.value).splitlines()) == 1
    assert not (tmp_path / "r.h5").exists()


def test_the_estimate_counts_parameters_optimizer_and_activations(tmp_path):
    spec = build_dataset("mog8").spec
    small = resources.estimate(cfg(tmp_path, width=64), spec, False)
    wide = resources.estimate(cfg(tmp_path, width=128), spec, False)
    big_batch = resources.estimate(cfg(tmp_path, width=64, batch_size=128), spec, False)
    assert small.optimizer == small.parameters  # Adam: two moments, as many bytes as weights and gradients
    assert wide.parameters > 3 * small.parameters and big_batch.parameters == small.parameters
    assert big_batch.activations == pytest.approx(2 * small.activations, rel=0.01)
    assert resources.estimate(cfg(tmp_path, width=64, optimizer="omd"), spec, False).optimizer == small.parameters // 2
    assert 0 < resources.available_memory() < 1 << 50
