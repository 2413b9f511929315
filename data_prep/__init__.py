"""Converters from the standard dataset layouts to hpcgan's HDF5 image format (see prepare.py)."""
