"""Communication layer: communicators (mpi, torch, horovod), compressors and error feedback."""
from __future__ import annotations

from mpi4py import MPI

from ..config import CommConfig
from . import mpi  # noqa: F401  (registers the "mpi" backend)
from .base import BACKENDS, Communicator


def build_communicator(cfg: CommConfig, comm: MPI.Comm | None = None) -> Communicator:
    """The communicator that ``--backend`` names, over ``comm`` (default COMM_WORLD)."""
    return BACKENDS.get(cfg.backend)(comm)
