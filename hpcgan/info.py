"""What the run ran on: library versions, a one-line machine description and where each rank ran
(host, cores, GPU, MPI library), stored in every results file and printed by ``hpcgan info``."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .comm.control import mpi_library, mpi_standard
from .comm.mpi import cuda_support, uses_device_memory
from .world import World, gpu_uuid, usable_cores

#: the stack, by module name -> distribution name (versions are read from the installed metadata:
#: importing torchvision, scipy, scikit-learn and horovod to ask them cost every process seconds)
PACKAGES = {"torchvision": "torchvision", "numpy": "numpy", "h5py": "h5py", "mpi4py": "mpi4py",
            "scipy": "scipy", "sklearn": "scikit-learn", "horovod": "horovod"}


def versions() -> dict[str, str]:
    """Versions of python, hpcgan, the stack and the MPI library (packages not installed are left out)."""
    out = {"python": platform.python_version(), "hpcgan": __version__, "torch": torch.__version__}
    for name, dist in PACKAGES.items():
        try:
            out[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    out["mpi_library"] = mpi_library()
    out["mpi_standard"] = mpi_standard()
    out["cuda"] = torch.version.cuda or "none"
    return out


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def machine(device: torch.device) -> str:
    """E.g. 'AMD EPYC 7B13 (2 cores), cpu' or '... , NVIDIA H100 80GB HBM3'."""
    return f"{cpu_model()} ({os.cpu_count()} cores), {device_name(device)}"


def cpu_list(cpus) -> str:
    """Core ids as ranges, e.g. {0, 1, 2, 3, 8} -> '0-3,8'."""
    ids, out = sorted(cpus), []
    for i in ids:
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in out)


def rank_info(world: World) -> dict[str, Any]:
    """Where this rank runs: host, node-local rank, the cores it may use, the GPUs it sees and the
    one it drives, the MPI library and whether that library reads GPU memory."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(usable_cores())
    return {**world.describe(), "local_size": world.local_size, "cpu_affinity": cpu_list(affinity),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
            "device_name": device_name(world.device), "gpu_uuid": gpu_uuid(world.device) or "",
            "mpi_library": mpi_library(), "mpi_cuda_aware": cuda_support()}


def every_rank_info(world: World) -> list[dict[str, Any]]:
    """Every rank's :func:`rank_info`, in rank order (collective)."""
    return world.comm.allgather(rank_info(world))


def ranks_attrs(world: World) -> dict[str, str]:
    """Results-file attributes: :func:`every_rank_info` as JSON (collective)."""
    return {"ranks_json": json.dumps(every_rank_info(world))}


def mpi_transfer(device: torch.device, cuda_aware_mpi: str = "auto") -> str:
    """How the mpi backend moves this device's tensors under ``--cuda-aware-mpi``."""
    if device.type == "cpu":
        return "host memory (CPU tensors)"
    if uses_device_memory(cuda_aware_mpi, cuda_support()):
        return "CUDA-aware: device memory handed to MPI"
    why = "--cuda-aware-mpi no" if cuda_aware_mpi == "no" else "the MPI library does not report CUDA support"
    return f"host-staged through reused pinned buffers ({why})"
