"""jobs/: every script parses (bash -n) and the dry runs print the exact srun lines."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parents[2] / "jobs"
ALGOS = ("sync", "dqgan", "dposg", "pcwgan", "cwgan")


def dry(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DRY_RUN": "1", "GPUS_PER_NODE": "4", "CPUS_PER_TASK": "7",
           "HPCGAN_PYTHON": sys.executable, **env}
    env.pop("SLURM_JOB_ID", None)
    return subprocess.run(["bash", str(JOBS / script), *args], capture_output=True, text=True, env=env, timeout=120)


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
                           f"--gpus-per-task=1 {sys.executable} -m mpi4py -m hpcgan train --algo {algo} ")
    assert line.endswith("--lr 1e-4")


def test_gpu_bind_and_uneven_task_counts():
    r = dry("sync.sbatch", GPU_BIND="closest", NTASKS="2")
    assert "--nodes=1 --ntasks=2 --ntasks-per-node=2 " in r.stdout and "--gpu-bind=closest" in r.stdout
    r = dry("sync.sbatch", NTASKS="6")
    assert r.returncode != 0 and "not a multiple of GPUS_PER_NODE=4" in r.stderr


def test_sweep_dry_run_prints_one_srun_line_per_run(tmp_path):
    scaling, batches = "strong", ("64", "8")  # weak differs only in the batch rule, tested in test_sweep_plan
    r = dry(f"sweep_{scaling}.sh", "--no-comm-bench", RANKS="1,8", ALGOS="sync", REPEATS="1", OUT=str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("srun --nodes=1 --ntasks=1 --ntasks-per-node=1 --cpus-per-task=7 --cpu-bind=cores "
                               "--gpus-per-task=1 ")
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
