"""What the run ran on: library versions and a one-line machine description (stored in results)."""
from __future__ import annotations

import importlib
import platform
import re
from pathlib import Path

import torch
from mpi4py import MPI

from . import __version__

PACKAGES = ("torch", "torchvision", "numpy", "h5py", "mpi4py", "scipy", "sklearn", "horovod")


def versions() -> dict[str, str]:
    """Versions of python, hpcgan, the stack and the MPI library (packages not installed are left out)."""
    out = {"python": platform.python_version(), "hpcgan": __version__}
    for name in PACKAGES:
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            continue
    out["mpi_library"] = MPI.Get_library_version().strip().splitlines()[0]
    out["mpi_standard"] = "%d.%d" % MPI.Get_version()
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


def machine(device: torch.device) -> str:
    """E.g. 'AMD EPYC 7B13 (2 cores), cpu' or '... , NVIDIA H100 80GB HBM3'."""
    import os

    accel = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return f"{cpu_model()} ({os.cpu_count()} cores), {accel}"
