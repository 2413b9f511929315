"""Training algorithms, looked up by ``--algo``."""
from .base import ALGORITHMS, Algorithm, GanAlgorithm, TrainContext
from . import cwgan, dqgan, pcwgan, sync  # noqa: F401  (register "cwgan", "dqgan", "pcwgan", "sync")

__all__ = ["ALGORITHMS", "Algorithm", "GanAlgorithm", "TrainContext"]
