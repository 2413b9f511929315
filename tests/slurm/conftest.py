"""A real single-node Slurm (tools/slurm_local.sh) for the tests in this folder.

The ``slurm`` fixture starts the cluster once per session (installing Debian's packages if they are
missing), and stops every daemon it started when the session ends, failed tests included; a cluster
that was already running is used and left running. Where it cannot start (not root, no apt-get)
every test here is skipped with that reason."""
from __future__ import annotations

import os
import subprocess

import pytest

from slurm_cluster import SLURM_LOCAL, Slurm


@pytest.fixture(scope="session")
def slurm() -> Slurm:
    why = subprocess.run([str(SLURM_LOCAL), "check"], capture_output=True, text=True)
    if why.returncode:
        pytest.skip(f"no local Slurm cluster here: {why.stdout.strip()}")
    was_up = subprocess.run([str(SLURM_LOCAL), "status"], capture_output=True).returncode == 0
    r = subprocess.run([str(SLURM_LOCAL), "start"], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"tools/slurm_local.sh start failed:\n{r.stderr}"
    conf = r.stdout.strip().rpartition("SLURM_CONF=")[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PMI_", "PMIX_", "HYDRA_"))}
    try:
        yield Slurm({**env, "SLURM_CONF": conf})
    finally:
        if not was_up:
            subprocess.run([str(SLURM_LOCAL), "stop"], capture_output=True, timeout=120)
