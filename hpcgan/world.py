"""Who this process is in the job: rank, size, node-local rank, device, seeds and threads.

Works the same under ``srun``, ``mpirun``/``mpiexec`` and a plain single process: the node-local
rank comes from a shared-memory split of the communicator, not from launcher variables. The one
launcher variable read is a sanity check: a process that srun started as one of several tasks
but that finds itself alone in its MPI world refuses to run (:func:`check_launch`).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import numpy as np
import torch

from .comm.control import ControlChannel, control_of
from .errors import UsageError
from .log import get_logger


@dataclass(frozen=True)
class World:
    comm: ControlChannel  # the control channel over the job's ranks (hpcgan.comm builds the rest on it)
    rank: int
    size: int
    local_rank: int
    local_size: int
    host: str
    device: torch.device
    threads: int

    def describe(self) -> dict:
        return {"rank": self.rank, "local_rank": self.local_rank, "host": self.host,
                "device": str(self.device), "threads": self.threads}


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_rank(usable: int, node_cores: int, local_size: int) -> int:
    """Cores this rank may use: its own affinity set when the launcher bound it (srun --cpu-bind),
    else an equal share of the node among the ranks on it. Never below 1."""
    if usable < node_cores:
        return max(1, usable)
    return max(1, node_cores // local_size)


#: Signs that this process was meant to have a GPU: a CUDA_VISIBLE_DEVICES or a Slurm GPU allocation.
GPU_EXPECTED_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS",
                          "SLURM_GPUS_PER_NODE")


def cuda_unusable_reason() -> str:
    """Why torch cannot use a GPU here ('' when it can): a CPU-only torch, or no device it can use
    (no GPU in the allocation, or a driver older than the one the wheel was built for)."""
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"torch {torch.__version__} is built without CUDA"
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return (f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable GPU "
                f"(CUDA_VISIBLE_DEVICES={visible if visible is not None else 'unset'}; a driver older than "
                "the wheel's CUDA also shows as none: see nvidia-smi)")
    return ""


def pick_device(local_rank: int, want: str = "auto", env=os.environ) -> torch.device:
    """The device for ``--device want``: CUDA device local_rank mod visible GPUs when CUDA works,
    else the CPU. More ranks than GPUs on a node share them round-robin (the mpi backend stages
    through host memory, the torch backend then uses gloo: NCCL needs one GPU per rank).

    1. ``cpu``: the CPU, whatever GPUs there are.
    2. CUDA usable: GPU local_rank mod count (``cuda`` and ``auto``).
    3. ``cuda`` without usable CUDA: UsageError (one line, exit 2): a GPU run never runs on the CPU.
    4. ``auto`` without usable CUDA: the CPU, with a warning where a GPU was expected
       (:data:`GPU_EXPECTED_VARIABLES` set).
    """
    if want == "cpu":
        return torch.device("cpu")
    why = cuda_unusable_reason()
    if not why:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if want == "cuda":
        raise UsageError(f"--device cuda, but {why}; pass --device cpu to run on the CPU")
    expected = [v for v in GPU_EXPECTED_VARIABLES if env.get(v) not in (None, "", "NoDevFiles")]
    if expected:
        get_logger().warning("--device auto: running on the CPU although %s is set: %s", expected[0], why)
    return torch.device("cpu")


def gpu_uuid(device: torch.device) -> str | None:
    """A GPU's identity across processes, whatever ``CUDA_VISIBLE_DEVICES`` each one sees (its
    UUID); None for the CPU."""
    if device.type != "cuda":
        return None
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    return str(uuid) if uuid is not None else f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')}#{device.index}"


def check_launch(world_size: int, env=os.environ) -> None:
    """UsageError if srun started this process as one of several tasks (``SLURM_STEP_NUM_TASKS``,
    which srun sets in every task it starts) but MPI sees a world of one rank: mpi4py was not
    built against the MPI library srun launches, so every task would run alone against the same
    ``--out``. (``SLURM_NTASKS`` alone is not used: the batch script has it too, and a single
    hpcgan process started there is legitimate.)"""
    tasks = int(env.get("SLURM_STEP_NUM_TASKS") or 1)
    if tasks > 1 and world_size == 1:
        raise UsageError(
            f"srun started {tasks} tasks (SLURM_STEP_NUM_TASKS={tasks}) but MPI sees a world of 1 rank: mpi4py is "
            "not built against the MPI library srun launches; rebuild it against the site MPI (module load it, "
            "then `make MPI=system`, see jobs/README.md) and/or set SRUN_MPI=pmix or pmi2 in jobs/env.sh "
            "(`srun --mpi=list` shows the choices)")


def init_world(comm=None, set_threads: bool = True, device: str = "auto") -> World:
    """Bootstrap from ``comm`` (a control channel or an mpi4py communicator; default: every rank of
    the job): local rank, device pinning (``device``: the ``--device`` choice, :func:`pick_device`),
    thread count.

    Threads = cores this process may use / ranks on this node (at least 1), so oversubscribed runs
    do not fight over cores; the environment variable ``HPCGAN_THREADS`` overrides it (``hpcgan
    sweep --threads``: the same thread count at every rank count).
    """
    comm = control_of(comm)
    check_launch(comm.size)
    local_rank, local_size = comm.node()
    device = pick_device(local_rank, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    threads = threads_per_rank(usable_cores(), os.cpu_count() or 1, local_size)
    threads = int(os.environ.get("HPCGAN_THREADS", threads))  # sweeps pin threads for comparable runs
    if set_threads:
        torch.set_num_threads(threads)
    return World(comm, comm.rank, comm.size, local_rank, local_size, socket.gethostname(), device, threads)


def rank_seed(seed: int, rank: int, stream: str = "") -> int:
    """A 63-bit seed for ``stream`` on ``rank``, independent across (seed, rank, stream)."""
    entropy = [seed, rank] + list(stream.encode())
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def seed_everything(seed: int, rank: int) -> None:
    """Seed torch and numpy globally for code that does not take a generator (per rank)."""
    torch.manual_seed(rank_seed(seed, rank, "torch"))
    np.random.seed(rank_seed(seed, rank, "numpy") % 2**32)
