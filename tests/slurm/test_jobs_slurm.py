"""jobs/ through a real Slurm (sbatch, srun --mpi=pmi2, job arrays, --signal, requeue) on this
machine's CPU (DEVICE=cpu): every algorithm's batch script, a sweep as job arrays, a job whose time
limit runs out and comes back, and the refusal of tasks that are MPI worlds of one.

Runs are tiny (the 2-D toy, tens of steps): this checks the plumbing, never timings."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from slurm_cluster import ROOT, Slurm
from hpcgan.results.schema import validate

JOBS = ROOT / "jobs"
ALGOS = ("sync", "dqgan", "dposg", "pcwgan", "cwgan")
#: Step columns that a resumed run must reproduce bit for bit (the others are times).
EXACT_COLUMNS = ("step", "bytes_sent", "real_samples", "fake_samples", "d_loss", "g_loss")
CPU = ("--gpus-per-node=0",)  # over the batch headers' GPUs: this node has none


@pytest.fixture(scope="module")
def algorithm_jobs(slurm: Slurm, tmp_path_factory) -> dict[str, tuple[str, Path]]:
    """Every jobs/<algo>.sbatch submitted at once (they queue), 2 tasks, results under $SCRATCH."""
    scratch = tmp_path_factory.mktemp("scratch")
    env = slurm.job_env(DATA="mog8", STEPS="12", BATCH="16", SCRATCH=str(scratch))
    submitted = {}
    for algo in ALGOS:
        job = slurm.sbatch(*CPU, "--ntasks=2", f"--output={scratch}/{algo}-%j.out", str(JOBS / f"{algo}.sbatch"),
                           "--log-every", "4", env=env)
        submitted[algo] = (job, scratch)
    return submitted


@pytest.mark.parametrize("algo", ALGOS)
def test_every_batch_script_runs_two_tasks_and_writes_a_valid_file(slurm, algorithm_jobs, algo):
    job, scratch = algorithm_jobs[algo]
    [done] = slurm.wait(job)
    log = (scratch / f"{algo}-{job}.out").read_text()
    assert (done.state, done.exit_code) == ("COMPLETED", 0), log
    assert "hpcgan: preflight: OK" in log, log
    out = scratch / "hpcgan" / "results" / job / f"{algo}.h5"  # $SCRATCH/hpcgan/results/<job id>/<algo>.h5
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        assert f.attrs["world_size"] == 2 and f.attrs["slurm_job_id"] == job and "finished_at" in f.attrs
        run = json.loads(f.attrs["config_json"])["run"]
    # checkpoints from the time limit (squeue): 30 minutes = 3 checkpoints over the 12 steps
    assert run["ckpt_every"] == 4 and run["device"] == "cpu"


def test_a_sweep_is_one_job_array_per_rank_count_each_task_sized_to_it(slurm, tmp_path):
    out = tmp_path / "sweep"
    env = slurm.job_env(DATA="mog8", RANKS="1,2", ALGOS="sync,dqgan", REPEATS="1", STEPS="8", BATCH="16",
                        OUT=str(out), TIME="10")
    r = slurm.run("bash", str(JOBS / "sweep_strong.sh"), "--no-comm-bench", env=env)
    assert r.returncode == 0, r.stderr
    arrays = dict(re.findall(r"N=(\d+): job array (\d+)", r.stdout))
    assert sorted(arrays) == ["1", "2"], r.stdout
    for n, array in arrays.items():
        tasks = slurm.wait(array)
        assert len(tasks) == 2, [t.id for t in tasks]  # one array task per algorithm
        for task in tasks:
            assert (task.state, task.exit_code) == ("COMPLETED", 0), task.fields
            assert task.fields["NumTasks"] == n and task.fields["ArrayJobId"] == array
    for algo in ("sync", "dqgan"):
        for n in (1, 2):
            path = out / f"{algo}_strong_n{n}_r0.h5"
            assert validate(str(path)) == [], (out / f"{algo}_strong_n{n}_r0.log").read_text()
            with h5py.File(path) as f:
                assert f.attrs["world_size"] == n and f.attrs["global_batch"] == 16


def steps_and_model(path: Path) -> tuple[dict[str, np.ndarray], list[dict]]:
    with h5py.File(path) as f:
        assert "finished_at" in f.attrs
        steps = {c: f["steps"][c][()] for c in EXACT_COLUMNS}
    ranks = sorted(Path(str(path) + ".model").glob("rank*.pt"))
    return steps, [torch.load(p, weights_only=False)["models"] for p in ranks]


def same_tensors(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_tensors(x, y) for x, y in zip(a, b))
    return a == b


def test_a_job_out_of_time_checkpoints_is_requeued_and_ends_as_an_uninterrupted_run(slurm, tmp_path):
    """--time=2 with --signal=USR1@75: Slurm warns at its first time-limit check (every 30 s) that
    is at most 75 s before the limit, so 45 to 75 s into the job, while the run trains; the step
    checkpoints and exits 138, the script requeues the job, and the job continues from the
    checkpoint to the same steps and final model, bit for bit, as the same run through one job with
    time to spare (both run at once: --oversubscribe). The emulated 20 ms latency per message makes
    training last over 80 s however fast this machine is, so the warning always comes first."""
    steps = "3500"
    env = slurm.job_env(DATA="mog8", STEPS=steps, BATCH="8", CKPT_EVERY="1000", PREFLIGHT="0")
    train = ("--log-every", "500", "--net-latency", "0.02")
    interrupted = slurm.sbatch(*CPU, "--ntasks=2", "--oversubscribe", "--time=2", "--signal=USR1@75",
                               f"--output={tmp_path}/i-%j.out", str(JOBS / "sync.sbatch"), *train,
                               "--out", str(tmp_path / "i.h5"), env=env)
    whole = slurm.sbatch(*CPU, "--ntasks=2", "--oversubscribe", "--time=10", f"--output={tmp_path}/w-%j.out",
                         str(JOBS / "sync.sbatch"), *train, "--out", str(tmp_path / "w.h5"), env=env)
    [i] = slurm.wait(interrupted, timeout=900)
    log = (tmp_path / f"i-{interrupted}.out").read_text()
    assert (i.state, i.exit_code) == ("COMPLETED", 0), log
    assert i.restarts >= 1 and f"requeueing job {interrupted}" in log, log
    assert f"requeued Slurm job {interrupted}: continuing" in log, log
    [w] = slurm.wait(whole, timeout=900)
    assert (w.state, w.exit_code, w.restarts) == ("COMPLETED", 0, 0)
    assert validate(str(tmp_path / "i.h5")) == []
    (steps_i, model_i), (steps_w, model_w) = steps_and_model(tmp_path / "i.h5"), steps_and_model(tmp_path / "w.h5")
    for column in EXACT_COLUMNS:
        assert np.array_equal(steps_i[column], steps_w[column]), column
    assert steps_i["step"][:, 0].tolist() == list(range(int(steps)))
    assert len(model_i) == 2 and same_tensors(model_i, model_w)


def test_tasks_that_each_see_an_mpi_world_of_one_are_refused(slurm, tmp_path):
    """srun without the PMI the embedded MPICH needs (this cluster's MpiDefault=none): each of the
    2 tasks is an MPI singleton; each refuses with one line and nothing is written."""
    out = tmp_path / "alone.h5"
    r = slurm.run("srun", *CPU, "--ntasks=2", sys.executable, "-m", "mpi4py", "-m", "hpcgan", "train", "--algo",
                  "sync", "--data", "mog8", "--device", "cpu", "--steps", "5", "--out", str(out),
                  env={"PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("hpcgan: error:")]
    assert len(errors) == 2, r.stderr
    assert all("srun started 2 tasks (SLURM_STEP_NUM_TASKS=2) but MPI sees a world of 1 rank" in e for e in errors)
    assert not out.exists()
