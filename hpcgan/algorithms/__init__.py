"""Training algorithms, looked up by ``--algo``."""
from .base import ALGORITHMS, Algorithm, GanAlgorithm, TrainContext
from . import dposg, dqgan, sync  # noqa: F401  (register "dposg", "dqgan", "sync")

__all__ = ["ALGORITHMS", "Algorithm", "GanAlgorithm", "TrainContext"]
