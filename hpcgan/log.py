"""The one logger. Rank 0 prints progress; other ranks only report errors."""
from __future__ import annotations

import logging
import sys

LOGGER_NAME = "hpcgan"


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def setup_logging(rank: int, level: int = logging.INFO) -> logging.Logger:
    """Configure the hpcgan logger once per process: INFO on rank 0, ERROR elsewhere."""
    log = get_logger()
    log.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    prefix = "hpcgan" if rank == 0 else f"hpcgan[rank {rank}]"
    handler.setFormatter(logging.Formatter(f"{prefix} %(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(level if rank == 0 else logging.ERROR)
    log.propagate = False
    return log
