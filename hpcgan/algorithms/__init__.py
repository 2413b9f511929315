"""Training algorithms, looked up by ``--algo``: each owns its step and its facts (:mod:`.base`)."""
from .base import (ALGORITHMS, Algorithm, GanAlgorithm, TrainContext, WeakScaling, defaults_help, fields_of,
                   resolve_config)
from . import cwgan, dposg, dqgan, pcwgan, sync  # noqa: F401  (register the algorithms)

__all__ = ["ALGORITHMS", "Algorithm", "GanAlgorithm", "TrainContext", "WeakScaling", "defaults_help", "fields_of",
           "resolve_config"]
