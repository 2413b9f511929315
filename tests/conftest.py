"""Fixtures shared by every suite."""
import pytest

from helpers import run_hpcgan


@pytest.fixture
def hpcgan():
    """Run ``mpiexec -n N python -m mpi4py -m hpcgan ARGS`` and return the CompletedProcess."""
    return run_hpcgan
