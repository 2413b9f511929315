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


def pick_device(local_rank: int) -> torch.device:
    """CUDA device local_rank mod visible GPUs when CUDA works, else the CPU. More ranks than GPUs
    on a node share them round-robin (the mpi backend stages through host memory, the torch
    backend then uses gloo: NCCL needs one GPU per rank)."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
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


def init_world(comm=None, set_threads: bool = True) -> World:
    """Bootstrap from ``comm`` (a control channel or an mpi4py communicator; default: every rank of
    the job): local rank, device pinning, thread count.

    Threads = cores this process may use / ranks on this node (at least 1), so oversubscribed runs
    do not fight over cores; the environment variable ``HPCGAN_THREADS`` overrides it (``hpcgan
    sweep --threads``: the same thread count at every rank count).
    """
    comm = control_of(comm)
    check_launch(comm.size)
    local_rank, local_size = comm.node()
    device = pick_device(local_rank)
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
