"""Compression: delta-approximate compressors (looked up by ``--compressor``), error feedback and
the C kernels they use. Compressors never see the network; :mod:`hpcgan.comm` moves their payloads."""
from .base import COMPRESSORS, Compressor, Payload, build_compressor
from . import cast, powersgd, qsgd, sign, sparse  # noqa: F401  (register the other compressors)

__all__ = ["COMPRESSORS", "Compressor", "Payload", "build_compressor"]
