"""Training algorithms, looked up by ``--algo``."""
from .base import ALGORITHMS, Algorithm, GanAlgorithm, TrainContext
from . import dposg, sync  # noqa: F401  (register "dposg", "sync")

__all__ = ["ALGORITHMS", "Algorithm", "GanAlgorithm", "TrainContext"]
