"""What a run leaves behind and says while it runs: its final model, the samples each step consumed,
its ranks' threads and devices, and progress lines by time when steps are slow."""
import json

import h5py
import pytest
from mpi4py import MPI

import hpcgan.train as train_module
from hpcgan.config import RunConfig
from hpcgan.results.model import read_final_model
from hpcgan.results.schema import validate
from hpcgan.train import Trainer
from hpcgan.world import init_world


@pytest.mark.parametrize("algo, real_per_step", [("sync", 16), ("cwgan", 5 * 16)])
def test_a_run_keeps_its_model_counts_its_samples_and_logs_by_time(tmp_path, monkeypatch, caplog, algo, real_per_step):
    monkeypatch.setattr(train_module, "PROGRESS_EVERY", 0.0)  # every step is "slow"
    out = tmp_path / "run.h5"
    cfg = RunConfig().replace(algo={"algo": algo}, data={"batch_size": 16}, model={"width": 8, "z_dim": 2},
                              run={"out": str(out), "steps": 3, "log_every": 1000, "eval_samples": 50})
    with caplog.at_level("INFO", logger="hpcgan"):
        Trainer(cfg, init_world(MPI.COMM_SELF, set_threads=False)).run()
    assert sum(r.getMessage().startswith("step ") for r in caplog.records) == 3, "a line per slow step, not per 1000"
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        assert f["steps"]["real_samples"][()].ravel().tolist() == [real_per_step] * 3
        fakes = real_per_step + (16 if algo == "cwgan" else 0)  # cwgan: + the generator's own batch
        assert f["steps"]["fake_samples"][()].ravel().tolist() == [fakes] * 3
        ranks = json.loads(f.attrs["ranks_json"])
        assert len(ranks) == 1 and ranks[0]["device"] == "cpu" and ranks[0]["threads"] >= 1 and ranks[0]["cpu_affinity"]
        assert f["eval"].attrs["samples"] == 50
    model = read_final_model(out)
    assert model.step == 3 and model.cfg == cfg and model.models[""].kind == ("conditional" if algo == "cwgan" else "single")


def test_a_budget_too_small_for_one_step_still_records_one(tmp_path):
    out = tmp_path / "b.h5"
    cfg = RunConfig().replace(run={"out": str(out), "budget": 1e-9}, data={"batch_size": 8}, model={"width": 8})
    Trainer(cfg, init_world(MPI.COMM_SELF, set_threads=False)).run()
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        assert f["steps"]["step"].shape[0] == 1 and "finished_at" in f.attrs
