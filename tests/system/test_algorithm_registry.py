"""Algorithms own their defaults and facts: every one runs with no flags on every dataset, and a toy
algorithm registered in its own file works with train, sweep, the cost model and the report."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from helpers import write_comm_file
from hpcgan.__main__ import main
from hpcgan.algorithms import ALGORITHMS, GanAlgorithm
from hpcgan.analysis import costmodel as cm
from hpcgan.analysis.report import write_report
from hpcgan.data import DATASETS
from hpcgan.data.writer import write_arrays
from hpcgan.netmodel import NetworkModel, Workload
from hpcgan.results.schema import validate
from hpcgan.sweep import plan, run_sweep


def image_file(path):
    rng = np.random.default_rng(0)
    write_arrays(path, True, rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8), np.arange(40) % 4,
                 [f"c{i}" for i in range(4)], {"source": "test", "split": "train"})
    return path


@pytest.mark.parametrize("algo", ["sync", "dqgan", "dposg", "pcwgan", "cwgan"])
def test_every_algorithm_runs_with_its_own_defaults_on_every_dataset(tmp_path, algo, monkeypatch):
    assert {"sync", "dqgan", "dposg", "pcwgan", "cwgan"} <= set(ALGORITHMS), "parametrize over the registry"
    assert set(DATASETS) == {"mog8", "mog25", "digits", "h5"}
    monkeypatch.chdir(tmp_path)   # the default --out, results/run.h5, lands here
    data = {"mog8": "mog8", "mog25": "mog25", "digits": "digits", "h5": f"h5:{image_file(tmp_path / 'img.h5')}"}
    for name, spec in data.items():
        # --steps keeps the test short; everything else is the algorithm's and the dataset's default
        assert main(["train", "--algo", algo, "--data", spec, "--steps", "2", "--force"]) == 0, name
        assert validate("results/run.h5") == [], name
        with h5py.File("results/run.h5") as f:
            assert f.attrs["algorithm"] == algo and "finished_at" in f.attrs


class Toy(GanAlgorithm):
    """Gradient descent on the averaged simultaneous gradient: the smallest lockstep algorithm."""

    summary = "toy: plain simultaneous gradient descent on the averaged gradient"
    defaults = {"lr": 0.02}
    comm_formula = "ring allreduce of 4d bytes, twice"

    @classmethod
    def comm_time(cls, net, m, work):
        return 2 * net.allreduce(4 * work.d, m)

    def step(self, batch, t):
        self._begin_step()
        with self.timer("compute"):
            d_loss, g_loss = self.compute_gradients(batch)
        with self.timer("comm"):
            self.comm.allreduce_(self.flat.grads, average=True)
        with self.timer("update"):
            self.flat.params.sub_(self.flat.grads, alpha=self.cfg.optim.lr)
        return self._stats(d_loss, g_loss)


def test_a_toy_algorithm_needs_only_its_own_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(ALGORITHMS._items, "toy", Toy)   # as @ALGORITHMS.register("toy") would
    out = tmp_path / "toy_weak_n1_r0.h5"
    assert main(["train", "--algo", "toy", "--steps", "8", "--warmup-steps", "2", "--scaling", "weak",
                 "--out", str(out)]) == 0
    with h5py.File(out) as f:
        assert '"lr": 0.02' in f.attrs["config_json"], "the toy's own default ran and was stored"
    assert main(["train", "--algo", "toy", "--compressor", "sign", "--out", str(tmp_path / "x.h5")]) == 2
    assert "--algo toy does not use --compressor" in capsys.readouterr().err

    jobs = plan({"steps": 8}, ["toy"], [1, 2], "weak", 1, tmp_path / "sweep")
    assert run_sweep(jobs, tmp_path / "sweep", "mpiexec -n {n}", dry_run=True, comm_bench=False) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("train --" in line and "--algo toy" in line for line in lines)

    net = NetworkModel(1e-6, 1e9)
    assert cm.comm_time("toy", net, 4, Workload({"G": 10, "D": 10}, 0.0, {})) == 2 * net.allreduce(80, 4)
    write_comm_file(tmp_path / "comm_n2.hdf5", 2, 1e-5, 1e9)
    md = write_report([out, tmp_path / "comm_n2.hdf5"], tmp_path / "report", net).read_text()
    assert "### toy" in md and "toy: ring allreduce of 4d bytes, twice" in md and "| weak | toy · 1 rank |" in md
