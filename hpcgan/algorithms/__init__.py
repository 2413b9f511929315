"""Training algorithms, looked up by ``--algo``."""
from .base import ALGORITHMS, Algorithm, GanAlgorithm, TrainContext
from . import cwgan, pcwgan, sync  # noqa: F401  (register "cwgan", "pcwgan", "sync")

__all__ = ["ALGORITHMS", "Algorithm", "GanAlgorithm", "TrainContext"]
