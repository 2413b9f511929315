"""Training algorithms, looked up by ``--algo``."""
from .base import ALGORITHMS, Algorithm, GanAlgorithm, TrainContext
from . import dqgan, sync  # noqa: F401  (register "dqgan", "sync")

__all__ = ["ALGORITHMS", "Algorithm", "GanAlgorithm", "TrainContext"]
