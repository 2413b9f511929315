"""Where ranks run and how tensors cross them: singleton detection under srun, the per-rank
placement in `hpcgan info` and in results files, the torch backend's choice of nccl or gloo, and
the mpi backend's choice between device memory and host staging."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import pytest
import torch
from mpi4py import MPI

from hpcgan.comm import build_communicator
from hpcgan.comm.mpi import _loaded_mpi_libraries, cuda_support, uses_device_memory
from hpcgan.comm.staging import Staging
from hpcgan.comm.torchdist import choose_backend
from hpcgan.config import CommConfig, RunConfig
from hpcgan.errors import UsageError
from hpcgan.info import cpu_list, every_rank_info, mpi_transfer
from hpcgan.train import Trainer
from hpcgan.world import check_launch, init_world


def test_srun_tasks_alone_in_their_mpi_world_refuse_to_run():
    with pytest.raises(UsageError, match=r"srun started 4 tasks \(SLURM_STEP_NUM_TASKS=4\) but MPI sees a world "
                                         r"of 1 rank: mpi4py is not built against"):
        check_launch(1, {"SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS": "4"})
    check_launch(4, {"SLURM_STEP_NUM_TASKS": "4"})   # a real 4-rank world
    check_launch(1, {"SLURM_STEP_NUM_TASKS": "1"})   # srun -n 1
    check_launch(1, {"SLURM_NTASKS": "8"})           # one process in the batch script itself
    check_launch(1, {})


def test_singleton_refusal_is_one_line_and_exit_2():
    env = {**os.environ, "SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2", "SLURM_PROCID": "1"}
    r = subprocess.run([sys.executable, "-m", "mpi4py", "-m", "hpcgan", "info"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpcgan: error: srun started 2 tasks"), r.stderr
    assert "SRUN_MPI=pmix or pmi2" in lines[0] and "make MPI=system" in lines[0]


def test_torch_backend_uses_nccl_only_when_every_rank_has_its_own_gpu():
    assert choose_backend([("a", "GPU-0"), ("a", "GPU-1"), ("b", "GPU-2")], nccl_available=True) == "nccl"
    assert choose_backend([("a", "GPU-0"), ("a", "GPU-0")], nccl_available=True) == "gloo"  # two ranks, one GPU
    assert choose_backend([("a", None), ("a", None)], nccl_available=True) == "gloo"        # CPU
    assert choose_backend([("a", "GPU-0"), ("a", None)], nccl_available=True) == "gloo"
    assert choose_backend([("a", "GPU-0"), ("a", "GPU-1")], nccl_available=False) == "gloo"


def test_torch_backend_on_this_machine_is_gloo_on_cpu_with_host_transport():
    comm = build_communicator(CommConfig(backend="torch"), MPI.COMM_SELF)
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the choice is covered by the GPU check (tools/gpu_check.sh)")
    assert comm.backend == "gloo" and comm.direct == {"cpu"} and comm.staging.device.type == "cpu"


def test_mpi_hands_device_memory_over_only_when_asked_or_reported():
    assert uses_device_memory("yes", False) and not uses_device_memory("no", True)
    assert uses_device_memory("auto", True) and not uses_device_memory("auto", False)
    if sys.platform == "linux":
        assert any("libmpi" in os.path.basename(p) for p in _loaded_mpi_libraries())
    staged = build_communicator(CommConfig(cuda_aware_mpi="no"), MPI.COMM_SELF)
    direct = build_communicator(CommConfig(cuda_aware_mpi="yes"), MPI.COMM_SELF)
    assert staged.direct == {"cpu"} and direct.direct == {"cpu", "cuda"}
    auto = build_communicator(CommConfig(), MPI.COMM_SELF)
    assert auto.cuda_aware == cuda_support()
    assert mpi_transfer(torch.device("cuda", 0), "no") == \
        "host-staged through reused pinned buffers (--cuda-aware-mpi no)"
    with pytest.raises(UsageError, match="--cuda-aware-mpi yes applies to --backend mpi"):
        build_communicator(CommConfig(backend="torch", cuda_aware_mpi="yes"), MPI.COMM_SELF)


def test_staging_buffers_grow_and_are_reused():
    s = Staging(torch.device("cpu"))
    a = s.buffer("send", torch.float32, 10)
    b = s.buffer("send", torch.float64, 5)    # same 40 bytes: the same memory
    c = s.buffer("send", torch.float32, 100)  # larger: grown once
    d = s.buffer("send", torch.bfloat16, 3)
    assert a.data_ptr() == b.data_ptr() and c.data_ptr() == d.data_ptr() and s.nbytes() == 400
    assert (a.dtype, a.numel(), b.dtype, b.numel()) == (torch.float32, 10, torch.float64, 5)
    assert s.pinned == torch.cuda.is_available()


def test_rank_info_in_info_and_in_every_results_file(tmp_path):
    assert cpu_list({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10-11" and cpu_list({5}) == "5"
    world = init_world(MPI.COMM_SELF, set_threads=False)
    cfg = RunConfig().replace(run={"out": str(tmp_path / "r.h5"), "steps": 2, "log_every": 1000,
                                   "eval_samples": 50}, data={"batch_size": 8})
    Trainer(cfg, world).run()
    with h5py.File(tmp_path / "r.h5") as f:
        rows = json.loads(f.attrs["ranks_json"])
    assert rows == every_rank_info(world) and len(rows) == 1
    row = rows[0]
    assert {"host", "local_rank", "cpu_affinity", "cuda_visible_devices", "device", "device_name",
            "mpi_library", "mpi_cuda_aware"} <= set(row)
    assert row["mpi_library"] == " ".join(MPI.Get_library_version().splitlines()[0].split())
    assert row["device"] == str(world.device) and row["mpi_cuda_aware"] == cuda_support()
