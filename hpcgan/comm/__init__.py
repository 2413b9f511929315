"""Communication layer: communicators (mpi, torch, horovod), compressors and error feedback."""
from __future__ import annotations

from mpi4py import MPI

from ..config import CommConfig
from . import horovod, mpi, torchdist  # noqa: F401  (register the backends)
from .base import BACKENDS, Communicator
from .netem import NetworkModel


def build_communicator(cfg: CommConfig, comm: MPI.Comm | None = None) -> Communicator:
    """The communicator that ``--backend`` names, over ``comm`` (default COMM_WORLD), with the
    network model of ``--net-latency`` / ``--net-bandwidth`` applied to its accounting."""
    return BACKENDS.get(cfg.backend)(comm, NetworkModel(cfg.net_latency, cfg.net_bandwidth))
