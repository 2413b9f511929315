"""jobs/ through a real Slurm (sbatch, srun --mpi=pmi2, job arrays, --signal, requeue) on this
machine's CPU (DEVICE=cpu): every algorithm's batch script, a sweep as job arrays, a job whose time
limit runs out and comes back, and the refusal of tasks that are MPI worlds of one.

Runs are tiny (the 2-D toy, tens of steps): this checks the plumbing, never timings.

The time-limit job pair waits most of its two minutes (emulated network latency, slept), so it runs
beside the others: the sweep (whole-node array tasks) goes first, then the pair is submitted and,
sharing the node with it (--oversubscribe), every batch script in turn (each waiting for the one
before: one at a time, as without the pair) and the srun refusal; a thread cuts the pair's time
limit while the others run."""
from __future__ import annotations

import json
import re
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from slurm_cluster import FINAL, ROOT, Slurm
from hpcgan.results.schema import validate

JOBS = ROOT / "jobs"
ALGOS = ("sync", "dqgan", "dposg", "pcwgan", "cwgan")
#: Step columns that a resumed run must reproduce bit for bit (the others are times).
EXACT_COLUMNS = ("step", "bytes_sent", "real_samples", "fake_samples", "d_loss", "g_loss")
CPU = ("--gpus-per-node=0",)  # over the batch headers' GPUs: this node has none
#: Beside the time-limit pair, which holds the node's cores shared (and sleeps most of the time).
SHARED = (*CPU, "--oversubscribe")
#: Steps of the time-limit pair.
OUT_OF_TIME_STEPS = 2000


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


def run_out_of_time(slurm: Slurm, job: str, log: Path, timeout: float = 600) -> None:
    """Let ``job`` run out of time while it trains: once its log shows training, cut its time limit
    (``scontrol update TimeLimit``, whole minutes) to end 35 to 90 s from now. Slurm then sends the
    --signal warning (USR1@90) at its next time-limit check (every 30 s), at least one check before
    the limit itself. Cutting
    the limit then, instead of submitting a short one, keeps the test independent of how long the
    start-up takes on a loaded machine (a warning during start-up stops the run before its first
    step, and a leg that never trains would be requeued forever). Once the job is requeued, gives
    its next start the time back."""
    deadline = time.monotonic() + timeout
    while "step 250 " not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and slurm.jobs(job)[0].state in ("PENDING", "RUNNING"), \
            log.read_text() if log.exists() else "no log"
        time.sleep(1)
    while True:  # run time r: a limit of L minutes with 35 <= 60 L - r <= 90 (none for r mod 60 in 26..29)
        h, m, sec = (["0"] + slurm.jobs(job)[0].fields["RunTime"].split("-")[-1].split(":"))[-3:]
        r = int(h) * 3600 + int(m) * 60 + int(sec)
        minutes = -(-(r + 35) // 60)
        if 60 * minutes - r <= 90:
            break
        time.sleep(1)
    update = slurm.run("scontrol", "update", f"JobId={job}", f"TimeLimit={minutes}")
    assert update.returncode == 0, update.stderr
    deadline = time.monotonic() + 300
    while slurm.jobs(job)[0].restarts == 0:  # requeued: give the next start its time back
        assert time.monotonic() < deadline and slurm.jobs(job)[0].state not in FINAL, log.read_text()
        time.sleep(0.5)
    assert slurm.run("scontrol", "update", f"JobId={job}", "TimeLimit=10").returncode == 0


@dataclass(frozen=True)
class OutOfTime:
    """The time-limit pair: ``interrupted`` runs out of time (``cut``: :func:`run_out_of_time` in a
    thread), ``whole`` runs the same steps with time to spare; both write under ``folder``."""

    interrupted: str
    whole: str
    folder: Path
    cut: Future


@pytest.fixture(scope="module")
def out_of_time(slurm: Slurm, tmp_path_factory):
    """The pair of :func:`test_a_job_out_of_time_checkpoints_is_requeued_and_ends_as_an_uninterrupted_run`,
    submitted before the batch-script jobs so that it runs beside them. An emulated 20 ms latency
    per message that each collective waits (--net-emulate delay: 40 ms a step at 2 ranks) keeps
    training over 80 s long however fast this machine is, so the warning (at most 34 s after step
    250: by step 1100) comes while it trains."""
    folder = tmp_path_factory.mktemp("out_of_time")
    env = slurm.job_env(DATA="mog8", STEPS=str(OUT_OF_TIME_STEPS), BATCH="8", CKPT_EVERY="1000", PREFLIGHT="0")
    train = ("--log-every", "250", "--net-latency", "0.02", "--net-emulate", "delay")
    interrupted = slurm.sbatch(*SHARED, "--ntasks=2", "--time=10", "--signal=USR1@90", f"--output={folder}/i-%j.out",
                               str(JOBS / "sync.sbatch"), *train, env={**env, "OUT": str(folder / "i.h5")})
    whole = slurm.sbatch(*SHARED, "--ntasks=2", "--time=10", f"--output={folder}/w-%j.out", str(JOBS / "sync.sbatch"),
                         *train, env={**env, "OUT": str(folder / "w.h5")})
    with ThreadPoolExecutor(1) as pool:
        cut = pool.submit(run_out_of_time, slurm, interrupted, folder / f"i-{interrupted}.out")
        try:
            yield OutOfTime(interrupted, whole, folder, cut)
        finally:
            if not cut.done():  # the test did not get to it: end the pair, which ends the thread
                slurm.run("scancel", interrupted, whole)


@pytest.fixture(scope="module")
def algorithm_jobs(slurm: Slurm, out_of_time: OutOfTime, tmp_path_factory) -> dict[str, tuple[str, Path]]:
    """Every jobs/<algo>.sbatch, 2 tasks, results under $SCRATCH: submitted at once, each starting
    when the one before has ended (one at a time beside the time-limit pair)."""
    scratch = tmp_path_factory.mktemp("scratch")
    env = slurm.job_env(DATA="mog8", STEPS="12", BATCH="16", SCRATCH=str(scratch))
    submitted, after = {}, ()
    for algo in ALGOS:
        job = slurm.sbatch(*SHARED, *after, "--ntasks=2", f"--output={scratch}/{algo}-%j.out",
                           str(JOBS / f"{algo}.sbatch"), "--log-every", "4", env=env)
        submitted[algo], after = (job, scratch), (f"--dependency=afterany:{job}",)
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


def test_tasks_that_each_see_an_mpi_world_of_one_are_refused(slurm, tmp_path):
    """srun without the PMI the embedded MPICH needs (this cluster's MpiDefault=none): each of the
    2 tasks is an MPI singleton; each refuses with one line and nothing is written."""
    out = tmp_path / "alone.h5"
    r = slurm.run("srun", *SHARED, "--ntasks=2", sys.executable, "-m", "mpi4py", "-m", "hpcgan", "train", "--algo",
                  "sync", "--data", "mog8", "--device", "cpu", "--steps", "5", "--out", str(out),
                  env={"PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("hpcgan: error:")]
    assert len(errors) == 2, r.stderr
    assert all("srun started 2 tasks (SLURM_STEP_NUM_TASKS=2) but MPI sees a world of 1 rank" in e for e in errors)
    assert not out.exists()


def test_a_job_out_of_time_checkpoints_is_requeued_and_ends_as_an_uninterrupted_run(slurm, out_of_time):
    """The job's time runs out while it trains (:func:`run_out_of_time`); Slurm's USR1 warning
    stops the run at a step with a checkpoint (exit 138), the script requeues the job (same id),
    and the requeued job, given time again, continues from the checkpoint to the same steps and
    final model, bit for bit, as the same run through one job with time to spare (both run at
    once: --oversubscribe; see :func:`out_of_time`)."""
    interrupted, folder = out_of_time.interrupted, out_of_time.folder
    out_of_time.cut.result()
    [i] = slurm.wait(interrupted, timeout=900)
    log = (folder / f"i-{interrupted}.out").read_text()
    assert (i.state, i.exit_code) == ("COMPLETED", 0), log
    assert i.restarts == 1 and f"requeueing job {interrupted}" in log, log
    assert "hpcgan: error: stopped by SIGUSR1 at step " in log, log
    assert f"requeued Slurm job {interrupted}: continuing" in log, log
    [w] = slurm.wait(out_of_time.whole, timeout=900)
    assert (w.state, w.exit_code, w.restarts) == ("COMPLETED", 0, 0)
    assert validate(str(folder / "i.h5")) == []
    (steps_i, model_i), (steps_w, model_w) = steps_and_model(folder / "i.h5"), steps_and_model(folder / "w.h5")
    for column in EXACT_COLUMNS:
        assert np.array_equal(steps_i[column], steps_w[column]), column
    assert steps_i["step"][:, 0].tolist() == list(range(OUT_OF_TIME_STEPS))
    assert len(model_i) == len(model_w) >= 1 and same_tensors(model_i, model_w)
