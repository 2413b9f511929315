"""hpcgan preflight: one line per problem in the ranks' launch facts (the GPU cases by their facts:
no GPU here), and the real command on this machine's CPU."""
import os
import subprocess
import sys

from hpcgan.preflight import problems


def row(rank, size=2, host="n1", uuid="", why="", step_tasks=0, aware=False, switch=""):
    return {"rank": rank, "size": size, "host": host, "local_rank": rank, "local_size": size,
            "step_tasks": step_tasks, "cuda_visible_devices": "0,1", "device": "cuda:0" if uuid else "cpu",
            "gpu_uuid": uuid, "no_gpu_why": why, "mpi_library": "MPICH Version: 5.0.2",
            "mpi_cuda_aware": aware, "cuda_aware_switch": switch}


def test_a_clean_gpu_launch_has_no_problem():
    rows = [row(0, uuid="GPU-a", step_tasks=2), row(1, uuid="GPU-b", step_tasks=2)]
    assert problems(rows, "cuda", "auto", allow_shared_gpu=False) == []


def test_a_world_of_one_under_a_multi_task_step():
    [line] = problems([row(0, size=1, step_tasks=4)], "cpu", "auto", False)
    assert line.startswith("MPI sees a world of 1 rank(s) but the Slurm step has 4 tasks")


def test_two_ranks_on_one_gpu_unless_allowed():
    rows = [row(0, uuid="GPU-a"), row(1, uuid="GPU-a"), row(2, host="n2", uuid="GPU-a")]
    [line] = problems(rows, "auto", "auto", False)
    assert line.startswith("ranks 0, 1 on n1 share GPU GPU-a")
    assert problems(rows, "auto", "auto", allow_shared_gpu=True) == []


def test_cuda_asked_but_a_rank_has_none():
    rows = [row(0, uuid="GPU-a"), row(1, host="n2", why="torch finds no usable GPU")]
    assert problems(rows, "cuda", "auto", False) == ["rank 1 on n2: --device cuda, but torch finds no usable GPU"]
    assert problems(rows, "auto", "auto", False) == []


def test_cuda_aware_mpi_yes_needs_the_library_or_a_switch():
    rows = [row(0, uuid="GPU-a"), row(1, uuid="GPU-b", switch="MPICH_GPU_SUPPORT_ENABLED=1"),
            row(2, host="n2", uuid="GPU-a", aware=True)]
    [line] = problems(rows, "cuda", "yes", False)
    assert line.startswith("rank 0 on n1: --cuda-aware-mpi yes, but MPICH Version: 5.0.2 does not report CUDA")
    assert problems(rows, "cuda", "auto", False) == []


def test_the_command_prints_each_rank_and_exits_non_zero_on_a_problem():
    ok = subprocess.run([sys.executable, "-m", "hpcgan", "preflight", "--device", "cpu"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.splitlines()[-1] == "hpcgan: preflight: OK", ok.stderr
    env_one_of_two = {"SLURM_STEP_NUM_TASKS": "2"}
    bad = subprocess.run([sys.executable, "-m", "hpcgan", "preflight", "--device", "cpu"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, **env_one_of_two})
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[-2].startswith("hpcgan: preflight: MPI sees a world of 1 rank(s) but the Slurm step")
