"""jobs/: every script parses (bash -n), the dry runs print the exact srun lines, and with a fake
`srun` on PATH the scripts behave as on a cluster whose MPI mpi4py was not built for (every task an
MPI singleton): the run refuses with one line, and a sweep carries on past it and lists it."""
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
    env = clean_env(**{"DRY_RUN": "1", "GPUS_PER_NODE": "4", "CPUS_PER_TASK": "7", **env})
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


@pytest.mark.parametrize("algo", ALGOS)
def test_algorithm_script_dry_run_prints_the_srun_line(algo):
    r = dry(f"{algo}.sbatch", "--lr", "1e-4", SLURM_NNODES="2")
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("srun --nodes=2 --ntasks=8 --ntasks-per-node=4 --cpus-per-task=7 --cpu-bind=cores "
                           f"--gpus-per-node=4 {sys.executable} -m mpi4py -m hpcgan train --algo {algo} ")
    assert line.endswith("--lr 1e-4")


@pytest.mark.parametrize("script", sorted(p.name for p in JOBS.iterdir() if p.suffix == ".sbatch")
                         + ["sweep_weak.sh", "sweep_strong.sh"])
def test_batch_headers_request_gpus_a_warning_signal_and_requeue(script):
    header = [line.split()[1] for line in (JOBS / script).read_text().splitlines() if line.startswith("#SBATCH ")]
    assert any(h.startswith(("--gpus-per-node=", "--gres=gpu:")) for h in header), header
    assert "--requeue" in header and any(re.fullmatch(r"--signal=USR1@\d+", h) for h in header), header


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
    r = dry("sync.sbatch", GPUS_PER_NODE=None)
    assert r.returncode == 2 and r.stdout == ""
    assert "cannot tell how many GPUs each node has" in r.stderr and "set GPUS_PER_NODE" in r.stderr
    r = dry("sync.sbatch", GPUS_PER_NODE="2", SLURM_GPUS_ON_NODE="8")
    assert r.returncode == 0 and "--ntasks-per-node=2 " in r.stdout
    assert r.stderr.count("GPUS_PER_NODE=2 as set explicitly (the allocation: 8)") == 1, r.stderr


def test_tasks_that_are_mpi_singletons_refuse_with_one_line_each(fake_srun, tmp_path):
    out = tmp_path / "run" / "sync.h5"
    env = clean_env(PATH=fake_srun, GPUS_PER_NODE="2", CPUS_PER_TASK="1", NTASKS="2", OUT=str(out), STEPS="3")
    r = subprocess.run(["bash", str(JOBS / "sync.sbatch")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("hpcgan: error:")]
    assert len(errors) == 2, r.stderr  # one line per task
    assert all("srun started 2 tasks (SLURM_STEP_NUM_TASKS=2) but MPI sees a world of 1 rank" in e for e in errors)
    assert not out.exists()


def test_sweep_continues_past_a_failed_rank_count_and_lists_it_with_its_log(fake_srun, tmp_path):
    out = tmp_path / "s"
    env = clean_env(PATH=fake_srun, GPUS_PER_NODE="2", CPUS_PER_TASK="1", RANKS="2,1", ALGOS="sync", REPEATS="1",
                    STEPS="3", BATCH="8", OUT=str(out))
    r = subprocess.run(["bash", str(JOBS / "sweep_strong.sh"), "--no-comm-bench", "--log-every", "1"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    assert validate(str(out / "sync_strong_n1_r0.h5")) == []  # N=1 ran after N=2 had failed
    with h5py.File(out / "sync_strong_n1_r0.h5") as f:
        assert "finished_at" in f.attrs
    failed_log = out / "sync_strong_n2_r0.log"
    tail = r.stdout.split("sweep: runs failed at 1 of 2 rank counts (N = 2):\n")[1].rstrip().splitlines()
    assert tail == [f"  sync_strong_n2_r0 (exit 1): {failed_log}"], r.stdout
    assert "srun started 2 tasks" in failed_log.read_text()
    assert (out / "sweep_strong_n1.log").exists() and (out / "sweep_strong_n2.log").exists()


def test_sweep_dry_run_prints_one_srun_line_per_run(tmp_path):
    scaling, batches = "strong", ("64", "8")  # weak differs only in the batch rule, tested in test_sweep_plan
    r = dry(f"sweep_{scaling}.sh", "--no-comm-bench", RANKS="1,8", ALGOS="sync", REPEATS="1", OUT=str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("srun --nodes=1 --ntasks=1 --ntasks-per-node=1 --cpus-per-task=7 --cpu-bind=cores "
                               "--gpus-per-node=1 ")
    assert lines[1].startswith("srun --nodes=2 --ntasks=8 --ntasks-per-node=4 --cpus-per-task=7 --cpu-bind=cores ")
    for line, b in zip(lines, batches):
        assert f" -m mpi4py -m hpcgan train " in line and f"--batch-size {b} " in line
        assert f"--scaling {scaling} " in line


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
