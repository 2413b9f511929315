"""Communication layer: communicators (mpi, torch, horovod) that move tensors and count bytes, the
uncounted control channel, and gossip topologies. Compression lives in :mod:`hpcgan.compress`;
compressed exchanges in :mod:`hpcgan.exchange`.

Importing this package starts nothing: each backend's module (which starts MPI, torch.distributed
or Horovod) is imported when that backend is first looked up, so a DDP script can use hpcgan's
compressors under torchrun without MPI.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import CommConfig
from .base import BACKENDS, Communicator

if TYPE_CHECKING:
    from mpi4py import MPI

BACKENDS.lazy("mpi", "hpcgan.comm.mpi:MPICommunicator")
BACKENDS.lazy("torch", "hpcgan.comm.torchdist:TorchCommunicator")
BACKENDS.lazy("horovod", "hpcgan.comm.horovod:HorovodCommunicator")


def build_communicator(cfg: CommConfig, comm: "MPI.Comm | None" = None) -> Communicator:
    """The communicator that ``--backend`` names, over ``comm`` (default COMM_WORLD), with the
    network model of ``--net-latency`` / ``--net-bandwidth`` applied as ``--net-emulate`` says and,
    for mpi, device memory handed to MPI or staged as ``--cuda-aware-mpi`` says."""
    return BACKENDS.get(cfg.backend).from_config(cfg, comm)
