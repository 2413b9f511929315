"""Communication layer: communicators (mpi, torch, horovod) that move tensors and count bytes, the
uncounted control channel, and gossip topologies. Compression lives in :mod:`hpcgan.compress`."""
from __future__ import annotations

from mpi4py import MPI

from ..config import CommConfig
from . import horovod, mpi, torchdist  # noqa: F401  (register the backends)
from .base import BACKENDS, Communicator


def build_communicator(cfg: CommConfig, comm: MPI.Comm | None = None) -> Communicator:
    """The communicator that ``--backend`` names, over ``comm`` (default COMM_WORLD), with the
    network model of ``--net-latency`` / ``--net-bandwidth`` applied to its accounting and, for
    mpi, device memory handed to MPI or staged as ``--cuda-aware-mpi`` says."""
    return BACKENDS.get(cfg.backend).from_config(cfg, comm)
