"""The runner with DQGAN in process (1 rank): bit-identical --resume, NaN stop, digits + sample grid."""
from __future__ import annotations

import h5py
import pytest
import torch
from mpi4py import MPI

from hpcgan.algorithms.dqgan import DQGAN
from hpcgan.config import RunConfig
from hpcgan.errors import NonFiniteLossError
from hpcgan.train import Trainer, checkpoint_path
from hpcgan.world import init_world


@pytest.fixture(scope="module")
def world():
    return init_world(MPI.COMM_SELF, set_threads=False)


def cfg_for(out, **run) -> RunConfig:
    return RunConfig().replace(
        algo={"algo": "dqgan"}, optim={"optimizer": "omd", "lr": 0.05},
        comm={"compressor": "topk", "ratio": 0.1}, data={"batch_size": 16},
        model={"width": 16, "z_dim": 4},
        run={"out": str(out), "steps": 24, "ckpt_every": 12, "flush_every": 10, "log_every": 1000,
             "eval_samples": 200, **run})


def final_state(cfg: RunConfig) -> dict:
    return torch.load(checkpoint_path(cfg, 0), weights_only=False)["algorithm"]


@pytest.mark.parametrize("variant", ["A", "B"])
def test_resumed_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path, world, variant):
    straight = cfg_for(tmp_path / "straight.h5").replace(algo={"dqgan_variant": variant})
    Trainer(straight, world).run()
    part = cfg_for(tmp_path / "part.h5", steps=12).replace(algo={"dqgan_variant": variant})
    Trainer(part, world).run()
    Trainer(part.replace(run={"steps": 24, "resume": True}), world).run()
    a, b = final_state(straight), final_state(part)
    residuals = a["exchange"]["memory"]
    assert set(residuals) == {"bucket0"} and a["dqgan"]["extrapolation"]["prev"] is not None  # mlp: one bucket
    assert float(residuals["bucket0"].abs().max()) > 0
    assert torch.equal(a["params"], b["params"])
    assert torch.equal(residuals["bucket0"], b["exchange"]["memory"]["bucket0"])
    assert torch.equal(a["dqgan"]["extrapolation"]["prev"], b["dqgan"]["extrapolation"]["prev"])
    with h5py.File(tmp_path / "part.h5") as f:
        assert f["steps"]["step"].shape == (24, 1) and "finished_at" in f.attrs
        assert f["steps"]["step"][:, 0].tolist() == list(range(24))


def test_nan_loss_stops_naming_step_and_rank_and_keeps_results(tmp_path, world, monkeypatch):
    step = DQGAN.step

    def nan_at_7(self, batch, t):  # the loss becomes NaN at step 7
        stats = step(self, batch, t)
        stats.d_loss = float("nan") if t == 7 else stats.d_loss
        return stats
    monkeypatch.setattr(DQGAN, "step", nan_at_7)
    cfg = cfg_for(tmp_path / "nan.h5", ckpt_every=0, flush_every=5)
    with pytest.raises(NonFiniteLossError, match="step 7 on rank 0") as e:
        Trainer(cfg, world).run()
    assert (e.value.step, e.value.rank, e.value.which) == (7, 0, "d_loss")
    with h5py.File(tmp_path / "nan.h5") as f:
        assert f["steps"]["step"].shape[0] == 10 and "finished_at" not in f.attrs
        assert "step 7" in f.attrs["stopped_reason"]


def test_huge_learning_rate_is_stopped_not_propagated(tmp_path, world):
    cfg = cfg_for(tmp_path / "huge.h5", ckpt_every=0, flush_every=5, steps=200).replace(
        optim={"lr": 1e12}, comm={"compressor": "identity"})
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        Trainer(cfg, world).run()
    with h5py.File(tmp_path / "huge.h5") as f:
        assert 0 < f["steps"]["step"].shape[0] < 200 and "stopped_reason" in f.attrs


def test_sample_grid_from_a_checkpoint(tmp_path, world):
    from PIL import Image

    from hpcgan.grid import main as grid_main

    cfg = cfg_for(tmp_path / "g.h5", steps=2, ckpt_every=2, eval_samples=16).replace(
        data={"data": "digits", "batch_size": 8}, model={"model": "dcgan32", "width": 4, "z_dim": 8})
    Trainer(cfg, world).run()  # DCGAN-32 on digits under compressed DQGAN
    with h5py.File(tmp_path / "g.h5") as f:
        assert f.attrs["compressor"] == "topk" and f["steps"]["step"].shape == (2, 1)
    grid_main([str(checkpoint_path(cfg, 0)), str(tmp_path / "grid.png"), "--n", "16", "--nrow", "4"])
    with Image.open(tmp_path / "grid.png") as im:
        assert im.size == (4 * 34 + 2, 4 * 34 + 2)
