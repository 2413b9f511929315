"""Talking to the local Slurm of tools/slurm_local.sh: submit, read job states, wait."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLURM_LOCAL = ROOT / "tools" / "slurm_local.sh"
#: Job states after which a job runs no more (a requeued job goes back to PENDING instead).
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
         "PREEMPTED"}


@dataclass(frozen=True)
class Job:
    id: str
    state: str
    exit_code: int  # the batch script's exit status
    restarts: int
    fields: dict[str, str]


@dataclass(frozen=True)
class Slurm:
    env: dict[str, str]

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              env={**self.env, **(env or {})})

    def job_env(self, **env: str) -> dict[str, str]:
        """What a job of the tests runs with: CPU mode, the embedded MPICH over PMI-2, this checkout.
        UCX_TLS=self,sm: all ranks share this one node; under load, MPICH's UCX address exchange over
        the network interfaces failed once in MPI_Init ("failed to unpack address, invalid bandwidth")."""
        return {"DEVICE": "cpu", "SRUN_MPI": "pmi2", "HPCGAN_ROOT": str(ROOT), "HPCGAN_PYTHON": sys.executable,
                "PYTHONPATH": str(ROOT), "UCX_TLS": "self,sm", **env}

    def sbatch(self, *argv: str, env: dict[str, str] | None = None) -> str:
        r = self.run("sbatch", "--parsable", *argv, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().split(";")[0]

    def jobs(self, job_id: str) -> list[Job]:
        """The job, or every task of an array job, as ``scontrol show job`` says."""
        r = self.run("scontrol", "show", "job", "-o", job_id)
        assert r.returncode == 0, r.stderr
        jobs = []
        for line in r.stdout.splitlines():
            fields = dict(re.findall(r"(\w[\w/:]*)=(\S*)", line))
            code = int(fields["ExitCode"].split(":")[0])
            jobs.append(Job(fields["JobId"], fields["JobState"], code, int(fields["Restarts"]), fields))
        return jobs

    def wait(self, job_id: str, timeout: float = 600) -> list[Job]:
        """Poll until the job (every array task) has ended for good."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.jobs(job_id)
            if jobs and all(j.state in FINAL for j in jobs):
                return jobs
            if time.monotonic() > deadline:
                self.run("scancel", job_id)
                pytest.fail(f"job {job_id} still not done after {timeout:.0f} s: {[(j.id, j.state) for j in jobs]}")
            time.sleep(1)
