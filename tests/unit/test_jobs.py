"""jobs/: every script parses (bash -n), the dry runs print the exact srun and sbatch lines, and with
a fake `srun` on PATH the scripts behave as on a cluster whose MPI mpi4py was not built for (every
task an MPI singleton): preflight names the problem, and the run itself refuses with one line.
tests/slurm/ runs the same scripts through a real Slurm."""
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from hpcgan.results.schema import validate

JOBS = Path(__file__).resolve().parents[2] / "jobs"
ALGOS = ("sync", "dqgan", "dposg", "pcwgan", "cwgan")
GPU_VARIABLES = ("GPUS_PER_NODE", "SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE", "CUDA_VISIBLE_DEVICES")


def clean_env(**env: str) -> dict[str, str]:
    """This environment without launcher and GPU-allocation variables, plus ``env``."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "PMI_", "PMIX_", "HYDRA_", "MPIR_")) and k not in GPU_VARIABLES}
    return {**base, "HPCGAN_PYTHON": sys.executable, **env}


def dry(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = clean_env(**{"DRY_RUN": "1", "GPUS_PER_NODE": "4", "CPUS_PER_TASK": "7", "HPCGAN_RESULTS": "/r", **env})
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(["bash", str(JOBS / script), *args], capture_output=True, text=True, env=env, timeout=120)


FAKE_SRUN = r"""#!/usr/bin/env bash
# fake srun: runs N copies of the command, each with the task variables srun sets, and no PMI, so
# each copy is an MPI singleton (as when mpi4py is not built against the launcher's MPI).
n=1
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in --ntasks=*) n="${1#--ntasks=}" ;; esac
    shift
done
pids=()
for ((i = 0; i < n; i++)); do
    SLURM_STEP_NUM_TASKS=$n SLURM_NTASKS=$n SLURM_PROCID=$i SLURM_LOCALID=$i "$@" &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
"""


@pytest.fixture
def fake_srun(tmp_path):
    """PATH with the fake srun first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(FAKE_SRUN)
    srun.chmod(srun.stat().st_mode | stat.S_IXUSR)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize("script", sorted(p.name for p in JOBS.iterdir() if p.suffix in (".sh", ".sbatch")))
def test_script_parses(script):
    r = subprocess.run(["bash", "-n", str(JOBS / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def train_line(r: subprocess.CompletedProcess) -> str:
    [line] = [line.rstrip() for line in r.stdout.splitlines() if " -m hpcgan train " in line]
    return line


@pytest.mark.parametrize("algo", ALGOS)
def test_algorithm_script_dry_run_prints_preflight_then_the_training_line(algo):
    r = dry(f"{algo}.sbatch", "--lr", "1e-4", SLURM_NNODES="2")
    assert r.returncode == 0, r.stderr
    preflight, train = (line.rstrip() for line in r.stdout.splitlines())
    flags = ("srun --nodes=2 --ntasks=8 --ntasks-per-node=4 --cpus-per-task=7 --cpu-bind=cores --kill-on-bad-exit=1 "
             "--gpus-per-node=4 ")
    assert preflight == f"{flags}{sys.executable} -m mpi4py -m hpcgan preflight --device cuda --cuda-aware-mpi auto"
    assert train.startswith(f"{flags}{sys.executable} -m mpi4py -m hpcgan train --algo {algo} ")
    # the real workload unless the toy is asked for; GPUs required; checkpoints on; results under HPCGAN_RESULTS
    assert "--data h5:" in train and "/data/cifar10.h5 --model dcgan32 " in train and "--device cuda " in train
    assert "--ckpt-every 200 " in train and "--out /r/local/" in train  # 10 checkpoints when the limit is unknown
    assert train.endswith("--lr 1e-4")
    assert ("--compressor sign" in train) == (algo == "dqgan")


def test_the_toy_only_when_asked_and_scratch_for_results():
    train = train_line(dry("sync.sbatch", DATA="mog8", HPCGAN_RESULTS=None, SCRATCH="/scratch/me"))
    assert "--data mog8 " in train and "--model" not in train and "--out /scratch/me/hpcgan/results/local/sync.h5" in train
    train = train_line(dry("sync.sbatch", DATA="h5:/d/c.h5", MODEL="resnet32"))
    assert "--data h5:/d/c.h5 --model resnet32 " in train


def test_a_missing_dataset_is_one_line_before_anything_runs(tmp_path):
    env = clean_env(GPUS_PER_NODE="1", HPCGAN_DATA=str(tmp_path), PATH="/nonexistent:" + os.environ["PATH"])
    r = subprocess.run(["bash", str(JOBS / "sync.sbatch")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines()[-1].startswith(f"hpcgan: error: no dataset at {tmp_path}/cifar10.h5: ")
    assert "DATA=mog8" in r.stderr


def test_gpu_bind_pmi_plugin_and_uneven_task_counts():
    r = dry("sync.sbatch", GPU_BIND="closest", NTASKS="2", SRUN_MPI="pmix")
    assert "--nodes=1 --ntasks=2 --ntasks-per-node=2 " in r.stdout
    assert "--gpus-per-node=2 --gpu-bind=closest --mpi=pmix " in r.stdout
    r = dry("sync.sbatch", GPU_BIND="per_task", NTASKS="4")
    assert "--gpus-per-task=1 " in r.stdout and "--gpus-per-node" not in r.stdout
    r = dry("sync.sbatch", NTASKS="6")
    assert r.returncode != 0 and "not a multiple of GPUS_PER_NODE=4" in r.stderr


@pytest.mark.parametrize("allocation, per_node", [
    ({"SLURM_GPUS_ON_NODE": "8", "CUDA_VISIBLE_DEVICES": "0,1"}, 8),
    ({"SLURM_GPUS_PER_NODE": "a100:2"}, 2),
    ({"SLURM_GPUS_PER_NODE": "4"}, 4),
    ({"CUDA_VISIBLE_DEVICES": "0,1,2"}, 3),
])
def test_gpus_per_node_comes_from_the_allocation(allocation, per_node):
    r = dry("sync.sbatch", GPUS_PER_NODE=None, SLURM_NNODES="2", **allocation)
    assert r.returncode == 0, r.stderr
    assert f" --ntasks={2 * per_node} --ntasks-per-node={per_node} " in r.stdout and "set explicitly" not in r.stderr


def test_gpus_per_node_without_an_allocation_is_an_error_and_an_override_is_announced():
    env = clean_env(DATA="mog8")
    r = subprocess.run(["bash", str(JOBS / "sync.sbatch")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert "cannot tell how many GPUs each node has" in r.stderr and "set GPUS_PER_NODE" in r.stderr
    r = dry("sync.sbatch", GPUS_PER_NODE="2", SLURM_GPUS_ON_NODE="8")
    assert r.returncode == 0 and "--ntasks-per-node=2 " in r.stdout
    assert r.stderr.count("GPUS_PER_NODE=2 as set explicitly (the allocation: 8)") == 1, r.stderr


def test_a_dry_run_on_a_cpu_node_shows_the_batch_headers_gpus():
    r = dry("dqgan.sbatch", GPUS_PER_NODE=None)
    assert r.returncode == 0, r.stderr
    assert "showing GPUS_PER_NODE=4" in r.stderr and " --gpus-per-node=4 " in train_line(r)


def test_cpu_mode_has_no_gpu_flags_and_takes_tasks_per_node_from_the_allocation():
    r = dry("sync.sbatch", DEVICE="cpu", GPUS_PER_NODE=None, CPUS_PER_TASK=None, SLURM_NTASKS="6", SLURM_NNODES="2",
            SLURM_CPUS_ON_NODE="12")
    assert r.returncode == 0, r.stderr
    train = train_line(r)
    assert train.startswith("srun --nodes=2 --ntasks=6 --ntasks-per-node=3 --cpus-per-task=4 --cpu-bind=cores "
                            "--kill-on-bad-exit=1 /")
    assert "--device cpu " in train and "gpu" not in train.split(" -m hpcgan ")[0]


def test_tasks_that_are_mpi_singletons_are_named_by_preflight_and_refused_by_train(fake_srun, tmp_path):
    out = tmp_path / "run" / "sync.h5"
    env = clean_env(PATH=fake_srun, DEVICE="cpu", TASKS_PER_NODE="2", CPUS_PER_TASK="1", NTASKS="2", OUT=str(out),
                    STEPS="3", DATA="mog8")
    r = subprocess.run(["bash", str(JOBS / "sync.sbatch")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1 and not out.exists()  # preflight stopped the job before training
    assert r.stdout.count("hpcgan: preflight: MPI sees a world of 1 rank(s) but the Slurm step has 2 tasks") == 2
    r = subprocess.run(["bash", str(JOBS / "sync.sbatch")], capture_output=True, text=True,
                       env={**env, "PREFLIGHT": "0"}, timeout=300)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("hpcgan: error:")]
    assert len(errors) == 2, r.stderr  # one line per task
    assert all("srun started 2 tasks (SLURM_STEP_NUM_TASKS=2) but MPI sees a world of 1 rank" in e for e in errors)
    assert not out.exists()


def test_a_sweep_submits_one_job_array_per_rank_count_sized_to_it(tmp_path):
    r = dry("sweep_strong.sh", "--no-comm-bench", RANKS="1,8", ALGOS="sync,dqgan,dposg", OUT=str(tmp_path / "s"),
            CPUS_PER_TASK=None)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and not (tmp_path / "s").exists()
    for line, size in zip(lines, ("--nodes=1 --ntasks=1 --ntasks-per-node=1 --gpus-per-node=1 ",
                                  "--nodes=2 --ntasks=8 --ntasks-per-node=4 --gpus-per-node=4 ")):
        assert " sbatch --parsable --array=0-2 " in line and size in line, line
        assert "--cpus-per-task" not in line  # the compute node's cores, not this host's
        assert line.rstrip().endswith("jobs/sweep_task.sbatch --no-comm-bench")
    assert "SWEEP_N=8" in lines[1] and "SWEEP_SCALING=strong" in lines[1]
    cpu = dry("sweep_weak.sh", RANKS="2", DEVICE="cpu", CPUS_PER_TASK="1", OUT=str(tmp_path / "s")).stdout
    assert "--ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 " in cpu and "sweep_task.sbatch" in cpu


def test_a_sweep_array_task_runs_its_algorithm_at_its_rank_count(tmp_path):
    env = {"SWEEP_SCALING": "weak", "SWEEP_N": "8", "SLURM_ARRAY_TASK_ID": "1", "ALGOS": "sync,dqgan",
           "REPEATS": "1", "OUT": str(tmp_path / "s"), "DATA": "mog8"}
    r = dry("sweep_task.sbatch", **env)
    assert r.returncode == 0, r.stderr
    [line] = r.stdout.strip().splitlines()
    assert line.startswith("srun --nodes=2 --ntasks=8 --ntasks-per-node=4 --cpus-per-task=7 --cpu-bind=cores "
                           "--kill-on-bad-exit=1 --gpus-per-node=4 ")
    assert " -m hpcgan train " in line and "--algo dqgan " in line and "--scaling weak " in line
    assert "--device cuda" in line
    assert "--ckpt-every 200 " in line


def test_local_study_dry_run_is_a_measurement_of_four_algorithms_both_scalings(tmp_path):
    r = dry("sweep_local.sh", OUT=str(tmp_path / "s"), PYTHON=sys.executable)
    assert r.returncode == 0, r.stderr
    runs = [line for line in r.stdout.splitlines() if " hpcgan train " in line]
    assert len(runs) == 4 * 2 * 2 * 3, r.stdout  # algorithms x scalings x ranks 1,2 x 3 repeats
    for line in runs:
        # a step long enough to time (DCGAN-32 on digits), never more ranks than this machine's 2 cores
        assert "--data digits " in line and "--model dcgan32 " in line and " -n 4 " not in line, line
        # each algorithm's own defaults: optimistic Adam for DQGAN and DPOSG, Adam for sync and pcwgan
        assert ("--optimizer oadam" in line) == ("dposg_" in line or "dqgan_" in line), line
        assert ("--compressor sign" in line) == ("dqgan_" in line), line
        assert ("--steps 40 " in line) == ("pcwgan_" in line) and ("--steps 300 " in line) != ("pcwgan_" in line)
    assert {line.split("--seed ")[1].split()[0] for line in runs} == {"0", "1", "2"}
    assert sum("bench sharing" in line for line in r.stdout.splitlines()) == 2  # n2, per scaling
    pcwgan = {line.split("--out ")[1].split()[0].rsplit("/", 1)[1]: line for line in runs if "pcwgan_" in line}
    assert "--labels 4 " in pcwgan["pcwgan_weak_n2_r0.h5"] and "--labels 2 " in pcwgan["pcwgan_weak_n1_r0.h5"]
    assert all("--labels 10 " in pcwgan[f"pcwgan_strong_n{n}_r0.h5"] for n in (1, 2))
    assert not (tmp_path / "s").exists()
