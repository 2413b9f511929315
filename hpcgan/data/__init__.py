"""Datasets, looked up by ``--data``: Gaussian mixtures, scikit-learn's digits and HDF5 image files."""
from .base import (DATASETS, ArrayDataset, Dataset, DataSpec, GaussianMixture, IndexedDataset, Loader,
                   build_dataset, digits_images)
from . import h5  # noqa: F401  (registers "h5")

__all__ = ["DATASETS", "ArrayDataset", "Dataset", "DataSpec", "GaussianMixture", "IndexedDataset", "Loader",
           "build_dataset", "digits_images"]
