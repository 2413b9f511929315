"""MPI test harness (run as ``mpiexec -n N python -m pytest --with-mpi tests/mpi``).

* Assertions that can differ between ranks go through :func:`helpers.assert_all`, which reduces them
  first, so every rank passes or fails the test together.
* Any other failure on one rank means the others may be stuck in a collective: the harness
  reports it and aborts the whole job instead of hanging (the per-test timeout is the last line).
* Only rank 0 reports to the terminal.
"""
from __future__ import annotations

import sys
import traceback

import pytest
from mpi4py import MPI

from helpers import CollectiveAssertionError


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    if MPI.COMM_WORLD.rank != 0:
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None or not report.failed or MPI.COMM_WORLD.size == 1:
        return
    if call.excinfo.errisinstance((CollectiveAssertionError, pytest.skip.Exception)):
        return
    comm = MPI.COMM_WORLD
    sys.stderr.write(f"\n[rank {comm.rank}] {item.nodeid} failed on this rank alone; aborting the job:\n")
    sys.stderr.write("".join(traceback.format_exception(call.excinfo.value)))
    sys.stderr.flush()
    comm.Abort(1)
