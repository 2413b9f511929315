"""``hpcgan preflight``: is this launch what the job asked for? Jobs run it before training
(jobs/train.sh), on the same ranks, so a misplaced allocation fails in seconds and not after the
queue wait and a silent hour on the wrong device.

Per rank it finds the GPUs the rank sees and the one it is bound to (the same choice as
:func:`hpcgan.world.pick_device`), and checks, all at once:

1. MPI world = the Slurm step's tasks (``SLURM_STEP_NUM_TASKS``, where srun started us): else
   mpi4py is not built against the MPI srun launches, or srun uses the wrong PMI;
2. ``--device cuda``: every rank has a usable GPU;
3. one GPU per rank: no two ranks on one GPU (same host and GPU UUID), unless ``--allow-shared-gpu``;
4. ``--cuda-aware-mpi yes``: the library reports CUDA support, or one of the switches of
   libraries that support it without reporting it is set (:data:`CUDA_AWARE_SWITCHES`).

Rank 0 prints one line per rank, then one line per problem; the exit status is 0 when there is
none, else 1 on every rank.
"""
from __future__ import annotations

import os
import socket
from typing import Any

from .comm.control import ControlChannel, control_of
from .errors import UsageError

#: Environment switches that make a library read device memory although it may not report it
#: through ``MPIX_Query_cuda_support`` (Cray MPICH, MVAPICH2-GDR).
CUDA_AWARE_SWITCHES = {"MPICH_GPU_SUPPORT_ENABLED": "1", "MV2_USE_CUDA": "1"}


def rank_facts(comm: ControlChannel, device: str, env=os.environ) -> dict[str, Any]:
    """This rank's launch: host, local rank, step tasks, visible and bound GPU, MPI library."""
    from .comm.mpi import cuda_support
    from .comm.control import mpi_library
    from .world import cuda_unusable_reason, gpu_uuid, pick_device

    local_rank, local_size = comm.node()
    why = "" if device == "cpu" else cuda_unusable_reason()
    bound = pick_device(local_rank, "cpu" if why else device, env)
    return {"rank": comm.rank, "size": comm.size, "host": socket.gethostname(), "local_rank": local_rank,
            "local_size": local_size, "step_tasks": int(env.get("SLURM_STEP_NUM_TASKS") or 0),
            "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES", "unset"), "device": str(bound),
            "gpu_uuid": gpu_uuid(bound) or "", "no_gpu_why": why, "mpi_library": mpi_library(),
            "mpi_cuda_aware": bool(cuda_support()),
            "cuda_aware_switch": next((f"{k}={v}" for k, v in CUDA_AWARE_SWITCHES.items() if env.get(k) == v), "")}


def problems(rows: list[dict[str, Any]], device: str, cuda_aware_mpi: str, allow_shared_gpu: bool) -> list[str]:
    """One line per problem in every rank's :func:`rank_facts` (steps 1-4 of the module doc)."""
    found = []
    first = rows[0]
    if first["step_tasks"] and first["step_tasks"] != first["size"]:
        found.append(f"MPI sees a world of {first['size']} rank(s) but the Slurm step has {first['step_tasks']} tasks "
                     "(SLURM_STEP_NUM_TASKS): mpi4py is not built against the MPI srun launches, or srun needs "
                     "--mpi=pmi2/pmix (SRUN_MPI, jobs/README.md; `make MPI=system` for the site MPI)")
    if device == "cuda":
        for row in rows:
            if row["no_gpu_why"]:
                found.append(f"rank {row['rank']} on {row['host']}: --device cuda, but {row['no_gpu_why']}")
    if device != "cpu" and not allow_shared_gpu:
        owners: dict[tuple[str, str], list[int]] = {}
        for row in rows:
            if row["gpu_uuid"]:
                owners.setdefault((row["host"], row["gpu_uuid"]), []).append(row["rank"])
        for (host, uuid), ranks in owners.items():
            if len(ranks) > 1:
                found.append(f"ranks {', '.join(map(str, ranks))} on {host} share GPU {uuid}: one GPU per rank "
                             "(request as many GPUs as tasks per node, or pass --allow-shared-gpu)")
    if cuda_aware_mpi == "yes":
        for row in rows:
            if row["gpu_uuid"] and not row["mpi_cuda_aware"] and not row["cuda_aware_switch"]:
                found.append(f"rank {row['rank']} on {row['host']}: --cuda-aware-mpi yes, but {row['mpi_library']} "
                             f"does not report CUDA support and none of {', '.join(CUDA_AWARE_SWITCHES)} is set")
    return found


def describe(row: dict[str, Any]) -> str:
    gpu = f"{row['device']} ({row['gpu_uuid']})" if row["gpu_uuid"] else row["device"]
    return (f"rank {row['rank']:>4}/{row['size']}  host {row['host']}  local_rank {row['local_rank']}/"
            f"{row['local_size']}  CUDA_VISIBLE_DEVICES {row['cuda_visible_devices']}  bound to {gpu}  "
            f"MPI {row['mpi_library']}  CUDA-aware {'yes' if row['mpi_cuda_aware'] else 'no'}")


def preflight(device: str, cuda_aware_mpi: str, allow_shared_gpu: bool, comm=None) -> int:
    """Collective: print the launch and its problems from rank 0; 0 if none, else 1 (every rank)."""
    if device not in ("auto", "cuda", "cpu"):
        raise UsageError(f"--device must be one of auto, cuda, cpu; got {device!r}")
    if cuda_aware_mpi not in ("auto", "yes", "no"):
        raise UsageError(f"--cuda-aware-mpi must be one of auto, yes, no; got {cuda_aware_mpi!r}")
    comm = control_of(comm)
    rows = comm.gather(rank_facts(comm, device), root=0)
    status = 0
    if comm.rank == 0:
        found = problems(rows, device, cuda_aware_mpi, allow_shared_gpu)
        for row in rows:
            print(describe(row))
        for line in found:
            print(f"hpcgan: preflight: {line}")
        print(f"hpcgan: preflight: {len(found)} problem(s)" if found else "hpcgan: preflight: OK", flush=True)
        status = 1 if found else 0
    return comm.bcast(status, root=0)
