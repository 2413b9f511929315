"""A run's outputs (RUN.h5, RUN.h5.ckpt/, RUN.h5.model/) belong to one run: a second run on the same
--out is refused while the first holds its lock (named: host, pid, Slurm job), a lock left by a
dead process is taken over, and only --force removes an earlier run's folders."""
import json
import socket
import subprocess
import sys

import pytest
from mpi4py import MPI

from hpcgan.algorithms import resolve_config
from hpcgan.errors import UsageError
from hpcgan.results import lock
from hpcgan.results.schema import validate
from hpcgan.train import train
from hpcgan.world import init_world


@pytest.fixture(scope="module")
def world():
    return init_world(MPI.COMM_SELF, set_threads=False)


def tiny(out, **flags):
    return resolve_config({"algo": "sync", "out": str(out), "steps": 2, "flush_every": 2, "log_every": 100,
                           "batch_size": 8, "width": 8, "eval_samples": 64, **flags})


def test_a_second_run_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path, world):
    out = tmp_path / "run.h5"
    out.write_bytes(b"the first run's results")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # alive, on this host
    try:
        lock.lock_path(out).write_text(json.dumps({**lock.holder_of_this_process(), "pid": holder.pid,
                                                   "slurm_job_id": "77"}))
        with pytest.raises(UsageError, match=rf"^--out {out} is in use by another run \(host {socket.gethostname()}, "
                                             rf"pid {holder.pid}, Slurm job 77, since "):
            train(tiny(out, force=True), world)
        assert out.read_bytes() == b"the first run's results"  # --force deleted nothing
    finally:
        holder.kill()
        holder.wait()
    train(tiny(out, force=True), world)  # the holder died (kill -9): its lock is stale
    assert validate(str(out)) == [] and not lock.lock_path(out).exists()


def test_the_lock_is_exclusive_and_released_only_by_its_owner(tmp_path):
    path = tmp_path / "run.h5.lock"
    token = lock.acquire(path)
    with pytest.raises(UsageError, match=f"in use by another run .*pid {__import__('os').getpid()}"):
        lock.acquire(path)
    lock.release(path, "not the owner's token")
    assert path.exists()
    lock.release(path, token)
    assert not path.exists()
    path.write_text("")  # a holder that died while writing it, or a damaged file: never guessed stale
    with pytest.raises(UsageError, match=f"is empty or damaged\\); if no run is writing .*, remove {path}"):
        lock.acquire(path)


@pytest.mark.parametrize("folder", ["run.h5.model", "run.h5.ckpt"])
def test_a_new_run_never_removes_an_earlier_runs_folders_without_force(tmp_path, world, folder):
    kept = tmp_path / folder / "notes.txt"
    kept.parent.mkdir()
    kept.write_text("mine")
    with pytest.raises(UsageError, match=f"^{tmp_path / folder} exists; pass --force to replace it"):
        train(tiny(tmp_path / "run.h5"), world)
    assert kept.read_text() == "mine" and not (tmp_path / "run.h5").exists()
    train(tiny(tmp_path / "run.h5", force=True), world)
    assert not kept.exists() and validate(str(tmp_path / "run.h5")) == []
