"""Who this process is in the job: rank, size, node-local rank, device, seeds and threads.

Works the same under ``srun``, ``mpirun``/``mpiexec`` and a plain single process: the node-local
rank comes from a shared-memory split of the communicator, not from launcher variables.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import numpy as np
import torch
from mpi4py import MPI


@dataclass(frozen=True)
class World:
    comm: MPI.Comm
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
    """CUDA device local_rank mod visible GPUs when CUDA works, else the CPU."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_world(comm: MPI.Comm | None = None, set_threads: bool = True) -> World:
    """Bootstrap from ``comm`` (default COMM_WORLD): local rank, device pinning, thread count.

    Threads = cores this process may use / ranks on this node (at least 1), so oversubscribed runs
    do not fight over cores; the environment variable ``HPCGAN_THREADS`` overrides it (``hpcgan
    sweep --threads``: the same thread count at every rank count).
    """
    comm = MPI.COMM_WORLD if comm is None else comm
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    local_rank, local_size = node.rank, node.size
    node.Free()
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
