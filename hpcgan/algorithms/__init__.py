"""Training algorithms, looked up by ``--algo``."""
from .base import ALGORITHMS, Algorithm, GanAlgorithm, TrainContext
from . import cwgan, dposg, dqgan, pcwgan, sync  # noqa: F401  (register the algorithms)

__all__ = ["ALGORITHMS", "Algorithm", "GanAlgorithm", "TrainContext"]
