"""Cost model (fit, formulas, projection) and scaling statistics (speedup, efficiency, CIs)."""
import math
from pathlib import Path

import numpy as np
import pytest

from helpers import fake_run, write_comm_file

from hpcgan.algorithms import ALGORITHMS
from hpcgan.analysis import costmodel as cm
from hpcgan.netmodel import NetworkModel, Workload
from hpcgan.analysis.scaling import Estimate, scaling_rows


def test_fit_recovers_latency_and_bandwidth_of_exact_data(tmp_path):
    files = [write_comm_file(tmp_path / f"comm_n{m}.hdf5", m, 5e-6, 2e9) for m in (2, 4)]
    net = cm.fit_network(files)
    assert net.latency == pytest.approx(5e-6, rel=1e-6) and net.bandwidth == pytest.approx(2e9, rel=1e-6)
    assert net.rel_error < 1e-6 and "M=2, M=4" in net.source and "bench comm" in net.source
    assert cm.fit_network([]) is None


def test_fit_ignores_files_without_bench_comm_rows(tmp_path):
    import h5py

    with h5py.File(tmp_path / "old.hdf5", "w") as f:  # the removed ``bench collectives`` layout
        f.attrs["world_size"] = 2
        f["allreduce/bytes"], f["allreduce/seconds"] = np.array([4, 1024]), np.array([1e-5, 2e-5])
    assert cm.fit_network([tmp_path / "old.hdf5"]) is None


def test_communication_formulas_come_from_each_algorithm():
    net = NetworkModel(1e-6, 1e9, "test")
    w = Workload({"G": 600, "D": 400}, 500.0, {"algo": {"gossip_rounds": 3}, "comm": {"compressor": "sign"},
                                               "optim": {"n_critic": 5}})
    assert cm.comm_time("sync", net, 4, w) == pytest.approx(2 * 3 * (1e-6 + 4000 / (4 * 1e9)))
    assert cm.comm_time("dqgan", net, 4, w) == pytest.approx(3 * (1e-6 + 500 / 1e9))
    summable = Workload(w.params, 500.0, {"comm": {"compressor": "randk"}})
    assert cm.comm_time("dqgan", net, 4, summable) == pytest.approx(2 * 3 * (1e-6 + 500 / (4 * 1e9)))
    assert cm.comm_time("dposg", net, 4, w) == pytest.approx(3 * (1e-6 + 4000 / 1e9))
    assert cm.comm_time("cwgan", net, 4, w) == pytest.approx(
        5 * 2 * 3 * (1e-6 + 1600 / (4 * 1e9)) + 2 * 3 * (1e-6 + 2400 / (4 * 1e9))), "n_critic D + one G allreduce"
    assert cm.comm_time("pcwgan", net, 4, w) == 0.0
    assert all(cm.comm_time(a, net, 1, w) == 0.0 for a in ALGORITHMS)
    assert math.isnan(cm.comm_time("unknown", net, 4, w))
    assert all(cm.comm_formula(a) != "unknown" for a in ALGORITHMS)


def test_projection_efficiency():
    net = NetworkModel(2e-6, 25e9, "test")
    w = Workload({"G": 5 * 10**5, "D": 5 * 10**5}, 0.0, {})
    weak = cm.project("sync", net, w, c1=0.01, scaling="weak", ranks=[1, 2000])
    assert weak[0][2] == 1.0 and weak[1][2] == pytest.approx(0.01 / (0.01 + 2 * 1999 * (2e-6 + 4e6 / 2000 / 25e9)))
    free = cm.project("pcwgan", net, w, c1=0.01, scaling="strong", ranks=[1, 8])
    assert free[1][1] == pytest.approx(0.01 / 8) and free[1][2] == pytest.approx(1.0)


def test_estimate_uses_student_t():
    e = Estimate.of([1.0, 2.0, 3.0])
    assert e.mean == 2.0 and e.half_width == pytest.approx(4.302652729911275 / math.sqrt(3))
    one = Estimate.of([5.0, float("nan")])
    assert one.mean == 5.0 and math.isnan(one.half_width) and one.fmt() == "5"


def test_weak_and_strong_speedup_and_efficiency_pair_repeats_by_seed():
    runs = [fake_run("sync", "weak", 1, 0, 1.0, 8), fake_run("sync", "weak", 1, 1, 2.0, 8),
            fake_run("sync", "weak", 4, 0, 2.0, 8), fake_run("sync", "weak", 4, 1, 2.0, 8),
            fake_run("sync", "strong", 1, 0, 1.0, 8), fake_run("sync", "strong", 2, 0, 0.625, 4)]
    rows = {(r.scaling, r.ranks): r for r in scaling_rows(runs)}
    w4 = rows[("weak", 4)]
    assert w4.step_time.mean == 2.0 and w4.throughput.mean == pytest.approx(32 / 2.0)
    assert w4.generated.mean == pytest.approx(2 * 32 / 2.0)
    assert w4.efficiency.mean == pytest.approx((0.5 + 1.0) / 2) and w4.speedup.mean == pytest.approx(3.0)
    assert w4.efficiency.n == 2 and math.isfinite(w4.efficiency.half_width)
    s2 = rows[("strong", 2)]
    assert s2.speedup.mean == pytest.approx(1.6) and s2.efficiency.mean == pytest.approx(0.8)
    assert rows[("weak", 1)].efficiency.mean == 1.0


def test_fit_reads_bench_comm_dense_rows(tmp_path):
    import h5py

    sizes = [1024, 65536, 1048576]
    m, alpha, bw = 4, 3e-6, 5e9
    rows = [("mpi", "dense", s, 2 * (m - 1) * (alpha + s / (m * bw))) for s in sizes]
    rows += [("mpi", "sign", 1024, 1.0), ("torch", "dense", 1024, 1.0)]  # ignored
    with h5py.File(tmp_path / "comm.h5", "w") as f:
        f.attrs["world_size"] = m
        for i, key in enumerate(("backend", "op")):
            f.create_dataset(f"comm/{key}", data=np.array([r[i] for r in rows], dtype=h5py.string_dtype()))
        f["comm/size"] = np.array([r[2] for r in rows])
        f["comm/t_median"] = np.array([r[3] for r in rows])
    net = cm.fit_network([tmp_path / "comm.h5"])
    assert net.latency == pytest.approx(alpha, rel=1e-6) and net.bandwidth == pytest.approx(bw, rel=1e-6)


def test_oversubscribed_local_time_is_the_sharing_factor_times_cpu_work(tmp_path):
    import h5py

    with h5py.File(tmp_path / "sharing_n4.hdf5", "w") as f:
        f.attrs.update(world_size=4, oversubscribed=True)
        f["sharing/bytes"] = np.array([8.0, 8.0, 8.0, 4096.0])
        f["sharing/cpu"] = np.array([0.004, 0.001, 0.016, 0.001])  # unsorted; the 4 KiB row is ignored
        f["sharing/factor"] = np.array([2.0, 2.4, 1.8, 9.0])
    sharing = cm.read_sharing([tmp_path / "sharing_n4.hdf5"])[4]
    assert sharing.cpu == (0.001, 0.004, 0.016) and sharing.factor == (2.4, 2.0, 1.8)
    assert sharing.at(0.002) == pytest.approx(2.2) and sharing.at(1.0) == 1.8 and sharing.at(1e-6) == 2.4
    run = fake_run("sync", "weak", 4, 0, 0.010, 8)
    run.steps["cpu"][:] = 0.004
    run.steps["t_comm"][:] = 0.003
    assert cm.local_time(run, sharing) == pytest.approx(2.0 * 0.004)
    assert cm.local_time(run) == pytest.approx(0.010 - 0.003), "cores of their own: measured wall - comm"
