"""Checkpoints on one process: loaded with weights_only for every algorithm, a crafted file never runs
code (--resume, hpcgan eval, hpcgan.grid), damaged files and failed writes are named, resumes that
would mix runs are refused, and --resume continues pcwgan on each rank's own clock."""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from hpcgan import checkpoint
from hpcgan.algorithms import ALGORITHMS, resolve_config
from hpcgan.errors import CollectiveError, UsageError, WriteError
from hpcgan.evaluate import eval_command
from hpcgan.grid import samples_of
from hpcgan.results.schema import validate
from hpcgan.train import Trainer, checkpoint_path, rows_path
from hpcgan.world import init_world


@pytest.fixture(scope="module")
def world():
    return init_world(MPI.COMM_SELF, set_threads=False)


def same(a, b) -> bool:
    """Equal nested states: tensors bit for bit, everything else by value."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def tiny(algo: str, out, **flags):
    values = {"algo": algo, "out": str(out), "steps": 4, "ckpt_every": 2, "flush_every": 2, "log_every": 100,
              "eval_samples": 64, "batch_size": 8, "width": 8, "z_dim": 2, **flags}
    if algo == "dposg":
        values["topology"] = "identity"
    return resolve_config(values)


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_algorithms_checkpoint_loads_as_weights_only(tmp_path, world, algo):
    cfg = tiny(algo, tmp_path / "run.h5")
    Trainer(cfg, world).run()
    state = torch.load(checkpoint_path(cfg, 0), weights_only=True)  # raises on anything but plain data
    assert state["step"] == 4 and state["world_size"] == 1 and state["algo"] == algo
    assert set(checkpoint.load(checkpoint_path(cfg, 0))) >= set(checkpoint.REQUIRED)


def test_numpy_rng_state_round_trips_through_a_checkpoint(tmp_path):
    np.random.seed(3)
    np.random.normal()  # leaves a cached gaussian in the state
    torch.save({"numpy_rng": checkpoint.numpy_rng_state()}, tmp_path / "s.pt")
    expected = np.random.random(5)
    checkpoint.set_numpy_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["numpy_rng"])
    assert np.array_equal(np.random.random(5), expected)


class _RunsCode:
    """Unpickling this calls exec: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def crafted_run(tmp_path, world):
    """A genuine checkpointed run whose rank0.pt is then replaced by a crafted one; returns (cfg, marker)."""
    cfg = tiny("sync", tmp_path / "run.h5")
    Trainer(cfg, world).run()
    marker = tmp_path / "pwned"
    state = checkpoint.load(checkpoint_path(cfg, 0))
    state["algorithm"]["payload"] = _RunsCode(marker)
    torch.save(state, checkpoint_path(cfg, 0))
    return cfg, marker


def test_a_crafted_checkpoint_runs_no_code_on_resume_eval_or_grid(tmp_path, world):
    cfg, marker = crafted_run(tmp_path, world)
    ckpt = str(checkpoint_path(cfg, 0))
    with pytest.raises(UsageError, match=f"refusing checkpoint {ckpt}.*could run code"):
        Trainer(cfg.replace(run={"steps": 6, "resume": True}), world)
    args = argparse.Namespace(metrics="mog", real=False, data=None, targets=[ckpt], samples=64, out=None,
                              inception_weights=None, proxy=None, is_splits=10)
    with pytest.raises(UsageError, match="refusing checkpoint"):
        eval_command(args, world)
    with pytest.raises(UsageError, match="refusing checkpoint"):
        samples_of(ckpt, 4)
    assert not marker.exists()


def test_a_damaged_or_foreign_checkpoint_is_named(tmp_path, world):
    cfg = tiny("sync", tmp_path / "run.h5")
    Trainer(cfg, world).run()
    path = checkpoint_path(cfg, 0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match=f"cannot read checkpoint {path}: damaged"):
        checkpoint.load(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(UsageError, match=f"cannot read checkpoint {path}: not an hpcgan checkpoint"):
        checkpoint.load(path)
    path.unlink()
    checkpoint.previous(path).unlink()  # the generation before (step 2)
    with pytest.raises(UsageError, match=f"no checkpoint {path}"):
        Trainer(cfg.replace(run={"steps": 6, "resume": True}), world)


def test_a_failed_checkpoint_write_says_why_keeps_the_last_one_and_cleans_up(tmp_path, world, monkeypatch):
    cfg = tiny("sync", tmp_path / "run.h5")
    Trainer(cfg, world).run()
    path = checkpoint_path(cfg, 0)
    before = path.read_bytes()

    def disk_full(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise RuntimeError("basic_ios::clear: iostream error")
    monkeypatch.setattr(torch, "save", disk_full)
    monkeypatch.setattr("hpcgan.errors.shutil.disk_usage", lambda p: SimpleNamespace(free=0))
    with pytest.raises(WriteError, match=f"cannot write checkpoint {path}: no space left on device"):
        checkpoint.save(path, {"step": 9}, MPI.COMM_SELF)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["rank0.pt", "rank0.pt.prev"]  # no .tmp


def test_a_failed_checkpoint_write_stops_the_run_with_one_reason(tmp_path, world, monkeypatch):
    cfg = tiny("sync", tmp_path / "run.h5", steps=6)

    def failing(obj, f, *a, **k):
        raise RuntimeError("unexpected pos 576 vs 534")
    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(WriteError, match="cannot write checkpoint .*rank0.pt"):
        Trainer(cfg, world).run()
    with h5py.File(tmp_path / "run.h5") as f:
        assert "cannot write checkpoint" in f.attrs["stopped_reason"] and f["steps"]["step"].shape[0] == 2
    assert not list(checkpoint.folder(cfg.run.out).glob("*.tmp"))


def test_resume_refuses_another_world_size_algorithm_or_mixed_steps(tmp_path, world):
    cfg = tiny("sync", tmp_path / "run.h5")
    Trainer(cfg, world).run()
    path = checkpoint_path(cfg, 0)
    state = checkpoint.load(path)
    with pytest.raises(UsageError, match="written by a job of 2 rank.*this job has 1"):
        checkpoint.check_resumable({**state, "world_size": 2}, path, cfg.to_json(), 1, set())
    with pytest.raises(UsageError, match="checkpoint of --algo dqgan, not sync"):
        checkpoint.check_resumable({**state, "algo": "dqgan"}, path, cfg.to_json(), 1, set())
    assert checkpoint.newest_common_step([[20, 10], [10]], cfg.run.out) == 10  # killed between renames
    with pytest.raises(UsageError, match=r"no step in common \(rank 0: \[20, 10\], rank 1: \[40, 30\]\)"):
        checkpoint.newest_common_step([[20, 10], [40, 30]], cfg.run.out)
    with pytest.raises(UsageError, match=r"of different runs \(ranks \[1\] differ"):
        checkpoint.check_one_run(["a", "b"], cfg.run.out)
    torch.save({**state, "world_size": 2}, path)
    before = (tmp_path / "run.h5").read_bytes()
    with pytest.raises(UsageError, match="2 rank"):
        Trainer(cfg.replace(run={"steps": 6, "resume": True}), world)
    assert (tmp_path / "run.h5").read_bytes() == before


@pytest.mark.parametrize("other, why", [({"seed": 1}, "its seed is 1, this run's is 0"),
                                        ({}, "its run_id is '[0-9a-f]{32}', this run's is '[0-9a-f]{32}'")])
def test_resume_refuses_a_results_file_of_another_run(tmp_path, world, other, why, monkeypatch):
    """Another run's results file of as many rows next to this run's checkpoints: a different seed,
    or the very same settings (--out included) run in another folder."""
    import shutil

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    monkeypatch.chdir(tmp_path / "a")
    cfg = tiny("sync", "run.h5", steps=4)
    Trainer(cfg, world).run()
    monkeypatch.chdir(tmp_path / "b")
    Trainer(tiny("sync", "run.h5", steps=4, **other), world).run()
    shutil.copy(tmp_path / "b/run.h5", tmp_path / "a/run.h5")
    monkeypatch.chdir(tmp_path / "a")
    before = (tmp_path / "a/run.h5").read_bytes()
    with pytest.raises(UsageError, match=f"cannot resume run.h5: {why}; it is another run's results"):
        Trainer(cfg.replace(run={"steps": 6, "resume": True}), world)
    assert (tmp_path / "a/run.h5").read_bytes() == before


def test_force_never_deletes_an_input_of_the_run(tmp_path, world):
    from hpcgan.data.writer import write_arrays

    data = tmp_path / "img.h5"
    rng = np.random.default_rng(0)
    write_arrays(data, True, rng.integers(0, 256, (16, 1, 8, 8), dtype=np.uint8), np.arange(16) % 2,
                 ["a", "b"], {"source": "test", "split": "train"})
    before = data.read_bytes()
    for flags in ({"force": True}, {"resume": True}, {}):
        with pytest.raises(UsageError, match=f"--out {data} is the run's input \\(--data h5:{data}"):
            Trainer(tiny("sync", data, data=f"h5:{data}", **flags), world)
    assert data.read_bytes() == before


def test_pcwgan_checkpoints_and_resumes_on_its_own_clock(tmp_path, world):
    straight = tiny("pcwgan", tmp_path / "straight.h5", steps=8)
    Trainer(straight, world).run()
    part = tiny("pcwgan", tmp_path / "part.h5", steps=4)
    Trainer(part, world).run()
    assert rows_path(part, 0).exists()
    Trainer(part.replace(run={"steps": 8, "resume": True}), world).run()
    a, b = (checkpoint.load(checkpoint_path(c, 0))["algorithm"] for c in (straight, part))
    assert same(a, b) and a["units"][0]["steps"] == 1
    assert validate(str(tmp_path / "part.h5")) == []
    with h5py.File(tmp_path / "part.h5") as f, h5py.File(tmp_path / "straight.h5") as g:
        assert f["steps"]["step"][:, 0].tolist() == list(range(8)) and "finished_at" in f.attrs
        assert np.array_equal(f["steps"]["d_loss"][()], g["steps"]["d_loss"][()])
        assert f["labels"]["steps"][()].sum() == 8


def test_a_nonfinite_loss_stops_a_pcwgan_rank_and_ends_the_run_naming_it(tmp_path, world, monkeypatch):
    pcwgan = ALGORITHMS.get("pcwgan")
    step = pcwgan.step

    def nan_at_3(self, batch, t):
        stats = step(self, batch, t)
        stats.g_loss = float("nan") if t == 3 else stats.g_loss
        return stats
    monkeypatch.setattr(pcwgan, "step", nan_at_3)
    with pytest.raises(CollectiveError, match="non-finite g_loss at step 3 on rank 0"):
        Trainer(tiny("pcwgan", tmp_path / "nan.h5", steps=100, ckpt_every=0), world).run()
    assert validate(str(tmp_path / "nan.h5")) == []
    with h5py.File(tmp_path / "nan.h5") as f:
        assert f["steps"]["step"].shape[0] == 4 and "step 3" in f.attrs["stopped_reason"]
