"""Sweep planning: batch rules of weak/strong scaling, per-algorithm rules, seeds, resumability."""
from pathlib import Path

import h5py
import pytest

from hpcgan import sweep
from hpcgan.__main__ import build_parser
from hpcgan.algorithms import ALGORITHMS, WeakScaling, fields_of, resolve_config
from hpcgan.config import config_to_argv, given_values
from hpcgan.errors import UsageError

BASE = {"batch_size": 64, "steps": 20, "seed": 7}   # the train flags given to the sweep


def test_weak_keeps_the_local_batch_and_strong_the_global_batch(tmp_path):
    weak = sweep.plan(BASE, ["sync"], [1, 2, 4], "weak", 1, tmp_path)
    strong = sweep.plan(BASE, ["sync"], [1, 2, 4], "strong", 1, tmp_path)
    assert [j.cfg.data.batch_size for j in weak] == [64, 64, 64]
    assert [j.cfg.data.batch_size * j.ranks for j in strong] == [64, 64, 64]
    assert [j.cfg.data.batch_size for j in strong] == [64, 32, 16]
    assert {j.cfg.run.scaling for j in strong} == {"strong"} and all(j.cfg.run.force for j in strong)


def test_strong_scaling_rejects_a_global_batch_the_ranks_do_not_divide(tmp_path):
    with pytest.raises(UsageError, match=r"not divisible by ranks \[3\]"):
        sweep.plan(BASE, ["sync"], [1, 2, 3], "strong", 1, tmp_path)


def test_repeats_get_consecutive_seeds_and_distinct_files(tmp_path):
    jobs = sweep.plan(BASE, ["sync"], [1, 2], "weak", 3, tmp_path)
    assert [(j.ranks, j.cfg.run.seed) for j in jobs] == [(1, 7), (1, 8), (1, 9), (2, 7), (2, 8), (2, 9)]
    assert len({j.path for j in jobs}) == 6
    assert jobs[4].path == tmp_path / "sync_weak_n2_r1.h5" and jobs[4].name == "sync_weak_n2_r1"


def test_unknown_algorithm_fails_before_anything_runs(tmp_path):
    with pytest.raises(UsageError, match="unknown algorithm 'nope'"):
        sweep.plan(BASE, ["sync", "nope"], [1], "weak", 1, tmp_path)


def test_an_algorithms_weak_scaling_rule_scales_its_field(tmp_path, monkeypatch):
    monkeypatch.setattr(ALGORITHMS.get("pcwgan"), "weak_scaling", WeakScaling("replicas", "test"))
    jobs = sweep.plan({**BASE, "replicas": 2, "labels": 1}, ["pcwgan"], [1, 4], "weak", 1, tmp_path)
    assert [j.cfg.algo.replicas for j in jobs] == [2, 8]
    strong = sweep.plan({**BASE, "replicas": 2}, ["pcwgan"], [1, 4], "strong", 1, tmp_path)
    assert [j.cfg.algo.replicas for j in strong] == [2, 2]  # strong scaling leaves it alone


def test_pcwgan_weak_scaling_keeps_k_labels_per_rank(tmp_path):
    base = {**BASE, "labels": 2}
    jobs = sweep.plan(base, ["pcwgan", "cwgan"], [1, 2, 4], "weak", 1, tmp_path)
    assert [(j.algo, j.ranks, j.cfg.data.labels) for j in jobs] == [
        ("pcwgan", 1, 2), ("pcwgan", 2, 4), ("pcwgan", 4, 8), ("cwgan", 1, 2), ("cwgan", 2, 4), ("cwgan", 4, 8)]
    assert all(j.cfg.data.batch_size == 64 for j in jobs)
    assert "--labels 8" in " ".join(config_to_argv(jobs[2].cfg, fields_of(ALGORITHMS.get("pcwgan"))))
    assert [j.cfg.data.labels for j in sweep.plan(base, ["pcwgan"], [1, 4], "strong", 1, tmp_path)] == [2, 2]
    with pytest.raises(UsageError, match="give --labels K"):
        sweep.plan(BASE, ["pcwgan"], [1, 2], "weak", 1, tmp_path)


@pytest.mark.parametrize("algo", ["sync", "dqgan", "dposg", "pcwgan", "cwgan"])
def test_generated_train_flags_rebuild_the_config_exactly(algo):
    cfg = resolve_config({"algo": algo, "lr": 1e-4, "labels": 3, "seed": 4})
    ns = build_parser().parse_args(["train", *config_to_argv(cfg, fields_of(ALGORITHMS.get(algo)))])
    assert resolve_config(given_values(ns)) == cfg


def test_a_shared_flag_an_algorithm_does_not_use_must_go_in_algo_flags(tmp_path):
    with pytest.raises(UsageError, match=r"--algo sync does not use --compressor.*--algo-flags 'sync"):
        sweep.plan({**BASE, "compressor": "sign"}, ["sync", "dqgan"], [1], "weak", 1, tmp_path)
    jobs = sweep.plan(BASE, ["sync", "dqgan"], [1], "weak", 1, tmp_path, {"dqgan": {"compressor": "topk"}})
    assert [j.cfg.comm.compressor for j in jobs] == ["identity", "topk"]


def test_launcher_needs_the_rank_placeholder():
    argv = sweep.launch_argv("srun --ntasks={n} --cpu-bind=cores", 8, ["train"])
    assert argv[:3] == ["srun", "--ntasks=8", "--cpu-bind=cores"] and argv[-4:] == ["mpi4py", "-m", "hpcgan", "train"]
    with pytest.raises(UsageError):
        sweep.launch_argv("srun", 8, ["train"])


def test_only_finished_valid_files_count_as_done(tmp_path):
    assert not sweep.is_done(tmp_path / "missing.h5")
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not hdf5")
    assert not sweep.is_done(broken)
    finished_but_invalid = tmp_path / "invalid.h5"
    with h5py.File(finished_but_invalid, "w") as f:
        f.attrs["finished_at"] = "now"
    assert not sweep.is_done(finished_but_invalid)


def test_dry_run_prints_only_pending_launch_lines(tmp_path, capsys):
    jobs = sweep.plan(BASE, ["sync"], [1, 2], "strong", 1, tmp_path)
    assert sweep.run_sweep(jobs, tmp_path / "x", "mpirun -np {n}", dry_run=True) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("mpirun -np 1 ") and lines[1].startswith("mpirun -np 2 ")
    assert "--batch-size 32" in lines[1] and lines[2].endswith("bench comm --backends mpi --compressors= --min-size 4 --max-size 1MiB --iters 20 "
                                                      "--warmup 2 --out " + str(tmp_path / "x" / "comm_n2.hdf5"))
    assert lines[3].startswith("mpirun -np 2 ") and lines[3].endswith(
        "bench sharing --work 0.001,0.004,0.016 --iters 100 --out " + str(tmp_path / "x" / "sharing_n2.hdf5"))
    assert not (tmp_path / "x").exists()


def test_hpcgan_threads_fixes_the_thread_count(monkeypatch):
    from hpcgan.world import init_world

    monkeypatch.setenv("HPCGAN_THREADS", "3")
    assert init_world(set_threads=False).threads == 3


def test_algo_flags_apply_to_their_algorithm_only():
    flags = sweep.parse_algo_flags(["dposg: --optimizer omd --topology ring", "pcwgan: --labels 2"])
    assert flags == {"dposg": {"optimizer": "omd", "topology": "ring"}, "pcwgan": {"labels": 2}}
    jobs = {(j.algo, j.ranks): j.cfg for j in sweep.plan(BASE, ["sync", "dposg", "pcwgan"], [1, 2], "weak", 1,
                                                        Path("/tmp/x"), flags)}
    assert jobs[("dposg", 2)].optim.optimizer == "omd" and jobs[("dposg", 2)].algo.topology == "ring"
    assert jobs[("sync", 2)].optim.optimizer == "adam" and jobs[("sync", 2)].data.labels == 0
    assert jobs[("pcwgan", 1)].data.labels == 2 and jobs[("pcwgan", 2)].data.labels == 4, "weak: 2 per rank"
    for bad in (["dposg --optimizer oadam"], ["nope: --lr 1"]):
        with pytest.raises(UsageError):
            sweep.parse_algo_flags(bad)
    with pytest.raises(UsageError, match="algo-flags"):
        sweep.parse_algo_flags(["dposg: --no-such-flag"])


def test_a_checkpointed_run_resumes_and_a_signal_stops_the_sweep(tmp_path, capsys):
    """A requeued array task continues its stopped run (--resume, not --force), and a run stopped
    by the time-limit warning (exit 138) is the last one launched: the job is about to end."""
    jobs = sweep.plan({"steps": 5}, ["sync"], [1, 2], "weak", 1, tmp_path)
    (tmp_path / "sync_weak_n1_r0.h5.ckpt").mkdir()
    assert sweep.run_sweep(jobs, tmp_path, "echo {n}", comm_bench=False, dry_run=True) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert " --resume " in first and " --force " not in first and " --force " in second
    code = sweep.run_sweep(jobs, tmp_path, "sh -c 'echo ran; exit 138' {n}", comm_bench=False)
    assert code == 138
    assert (tmp_path / "sync_weak_n1_r0.log").exists() and not (tmp_path / "sync_weak_n2_r0.log").exists()
