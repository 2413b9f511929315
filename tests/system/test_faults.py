"""Faults under mpiexec: errors on some ranks never hang, signals stop at one agreed step with a
checkpoint, requeued jobs resume, resumes that would mix runs are refused, a full disk is one line.

Runs go through a small launcher (LAUNCH) that writes each rank's pid and injects faults named in
the environment, then calls hpcgan's real entry point. Times allow for a loaded machine; a hang
still fails (subprocess timeout)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from helpers import MPIEXEC
from hpcgan.results.schema import validate

LAUNCH = '''
import os
import sys
from pathlib import Path

from mpi4py import MPI

rank = MPI.COMM_WORLD.rank
if os.environ.get("TEST_PIDS"):
    Path(os.environ["TEST_PIDS"], f"rank{rank}").write_text(str(os.getpid()))
if os.environ.get("TEST_FAULT"):  # kind:rank:step[:status], kind = usage | exit
    kind, where, at, *status = os.environ["TEST_FAULT"].split(":")
    from hpcgan.algorithms.sync import Sync
    from hpcgan.errors import UsageError
    step = Sync.step

    def faulty(self, batch, t):
        if t == int(at) and rank == int(where):
            if kind == "usage":
                raise UsageError("injected usage error")
            os._exit(int(status[0]))
        return step(self, batch, t)
    Sync.step = faulty
if os.environ.get("TEST_DISK_FULL_AFTER"):  # the filesystem fills up after N flushes
    import hpcgan.results.recorder as recorder
    calls = [0]

    def free_bytes(path):
        calls[0] += 1
        return 0 if calls[0] > int(os.environ["TEST_DISK_FULL_AFTER"]) else 1 << 40
    recorder.free_bytes = free_bytes
if os.environ.get("TEST_KILL_AFTER_AGREE"):  # rank:n -- kill -9 after the n-th checkpoint agreement, before renaming
    import signal
    import hpcgan.checkpoint as checkpoint
    where, nth = map(int, os.environ["TEST_KILL_AFTER_AGREE"].split(":"))
    agree, agreed = checkpoint.agree, [0]

    def agree_then_die(comm, error):
        agree(comm, error)
        agreed[0] += 1
        if rank == where and agreed[0] == nth:
            import time
            time.sleep(1)  # the other ranks rename theirs meanwhile, then wait for this one at the next flush
            os.kill(os.getpid(), signal.SIGKILL)
    checkpoint.agree = agree_then_die
if os.environ.get("TEST_CWD_RANK1") and rank == 1:  # this rank's node sees another file system
    os.chdir(os.environ["TEST_CWD_RANK1"])

import hpcgan.__main__
if os.environ.get("TEST_GRACE_S"):  # a rank that raised alone waits this long for the others, not 10 s
    hpcgan.__main__.GRACE_S = float(os.environ["TEST_GRACE_S"])
hpcgan.__main__.run()
'''

RUN = ("train", "--batch-size", "16", "--flush-every", "10", "--log-every", "1000", "--width", "32")
#: Where an error is raised on one rank alone, that rank waits GRACE_S for the others to raise it too
#: before aborting the job; here no other rank ever will, so waiting the product's 10 s checks nothing.
ALONE = {"TEST_GRACE_S": "2"}


@pytest.fixture(scope="module")
def launch(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("launch") / "launch.py"
    path.write_text(LAUNCH)
    return path


def command(launch: Path, n: int, *args: str) -> list[str]:
    return [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", str(launch), *args]


def run(launch: Path, n: int, *args: str, env: dict | None = None, cwd=None, timeout: float = 180):
    """Run to completion; returns (CompletedProcess, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(command(launch, n, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # a hang: take the whole job down, then fail
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), time.monotonic() - t0


def error_lines(stderr: str) -> list[str]:
    return [l for l in stderr.splitlines() if l.startswith("hpcgan: error")]


def start_and_signal(launch: Path, tmp_path: Path, out: Path, sig: int, to: str, *args: str, env: dict | None = None):
    """Start a long 2-rank run, wait for its first checkpoint, send ``sig`` to rank 1 (``to="rank1"``)
    or to mpiexec (``to="mpiexec"``, which forwards it); returns the finished process and its stderr."""
    pids = tmp_path / f"pids-{out.stem}"
    pids.mkdir()
    proc = subprocess.Popen(command(launch, 2, *RUN, "--steps", "1000000", "--out", str(out), *args),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "TEST_PIDS": str(pids), **(env or {})})
    try:
        deadline = time.monotonic() + 120
        while not (out.parent / (out.name + ".ckpt") / "rank1.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not checkpoint"
            time.sleep(0.2)
        os.kill(int((pids / "rank1").read_text()) if to == "rank1" else proc.pid, sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # it did not stop: take the whole job down
            for rank in pids.iterdir():
                os.kill(int(rank.read_text()), signal.SIGKILL)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc, stderr


def checkpoint_steps(out: Path) -> list[int]:
    return [torch.load(out.parent / (out.name + ".ckpt") / f"rank{r}.pt", weights_only=True)["step"] for r in (0, 1)]


# -- no hang: errors on some ranks -----------------------------------------------------------------
def test_a_usage_error_on_one_rank_ends_the_job_naming_rank_and_cause(launch, tmp_path):
    r, seconds = run(launch, 2, *RUN, "--steps", "100000", "--out", str(tmp_path / "u.h5"),
                     env={"TEST_FAULT": "usage:1:5", **ALONE})
    assert r.returncode == 2 and seconds < 150, r.stderr
    assert error_lines(r.stderr) == ["hpcgan: error: rank 1 of 2: injected usage error (the other ranks went on: "
                                     "aborting the job)"]


def test_a_dataset_missing_on_one_node_is_one_line_naming_the_rank(launch, tmp_path):
    from hpcgan.data.writer import write_arrays

    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    rng = np.random.default_rng(0)
    write_arrays(tmp_path / "data" / "img.h5", True, rng.integers(0, 256, (16, 1, 32, 32), dtype=np.uint8),
                 np.arange(16) % 2, ["a", "b"], {"source": "test", "split": "train"})
    r, _ = run(launch, 2, *RUN, "--steps", "4", "--data", "h5:data/img.h5", "--model", "dcgan32", "--width", "4",
               "--out", str(tmp_path / "d.h5"), cwd=tmp_path, env={"TEST_CWD_RANK1": str(tmp_path / "elsewhere")})
    assert r.returncode == 2, r.stderr
    [line] = error_lines(r.stderr)
    assert line.startswith("hpcgan: error: rank 1: ") and "data/img.h5" in line


def test_a_topology_file_missing_on_one_node_ends_the_job(launch, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    np.save(tmp_path / "w.npy", np.full((2, 2), 0.5))
    r, seconds = run(launch, 2, *RUN, "--algo", "dposg", "--steps", "4", "--topology", "w.npy",
                     "--out", str(tmp_path / "t.h5"), cwd=tmp_path,
                     env={"TEST_CWD_RANK1": str(tmp_path / "elsewhere"), **ALONE})
    lines = error_lines(r.stderr)
    assert r.returncode == 2 and seconds < 150 and len(lines) == 1, (r.returncode, seconds, r.stderr)
    assert "rank 1 of 2" in lines[0] and "w.npy" in lines[0]


def test_a_rank_leaving_through_os_exit_is_named_and_never_a_success(launch, tmp_path):
    r, _ = run(launch, 2, *RUN, "--steps", "100000", "--out", str(tmp_path / "x.h5"), env={"TEST_FAULT": "exit:1:5:0"})
    assert r.returncode != 0
    assert "hpcgan: rank 1 of 2 exited with status 0 (os._exit) before the command ended" in r.stderr


# -- signals, requeue ------------------------------------------------------------------------------
def test_sigterm_on_one_rank_stops_every_rank_at_one_step_with_a_checkpoint_and_resumes(launch, tmp_path):
    out = tmp_path / "s.h5"
    proc, stderr = start_and_signal(launch, tmp_path, out, signal.SIGTERM, "rank1", "--ckpt-every", "20")
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    [line] = error_lines(stderr)
    assert "stopped by SIGTERM at step" in line and "continue with --resume" in line
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        rows, reason = f["steps"]["step"].shape[0], f.attrs["stopped_reason"]
    assert "SIGTERM" in reason and checkpoint_steps(out) == [rows, rows]  # one step for every rank, all rows kept
    r, _ = run(launch, 2, *RUN, "--steps", str(rows + 20), "--ckpt-every", "20", "--resume", "--out", str(out))
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        assert f["steps"]["step"][:, 0].tolist() == list(range(rows + 20)) and "finished_at" in f.attrs


def test_a_requeued_job_resumes_from_its_checkpoint_and_another_job_is_refused(launch, tmp_path):
    out = tmp_path / "q.h5"
    job = {"SLURM_JOB_ID": "4242"}
    proc, stderr = start_and_signal(launch, tmp_path, out, signal.SIGUSR1, "mpiexec", "--ckpt-every", "20", env=job)
    assert proc.returncode == 128 + signal.SIGUSR1, stderr
    steps = checkpoint_steps(out)[0]
    r, _ = run(launch, 2, *RUN, "--steps", str(steps + 10), "--ckpt-every", "20", "--out", str(out), env=job)
    assert r.returncode == 0 and "requeued Slurm job 4242: continuing" in r.stderr, r.stderr
    with h5py.File(out) as f:
        assert f["steps"]["step"].shape[0] == steps + 10 and "finished_at" in f.attrs
    r, _ = run(launch, 2, *RUN, "--steps", "5", "--out", str(out), env={"SLURM_JOB_ID": "4243"})
    assert r.returncode == 2 and "exists; pass --force" in r.stderr


def test_pcwgan_stops_on_sigterm_and_resumes_every_rank_from_its_own_step(launch, tmp_path):
    out = tmp_path / "p.h5"
    proc, stderr = start_and_signal(launch, tmp_path, out, signal.SIGTERM, "mpiexec", "--algo", "pcwgan",
                                    "--ckpt-every", "10")
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert validate(str(out)) == []
    steps = checkpoint_steps(out)
    with h5py.File(out) as f:
        assert ((f["steps"]["step"][()] >= 0).sum(axis=0)).tolist() == steps and "SIGTERM" in f.attrs["stopped_reason"]
    r, _ = run(launch, 2, *RUN, "--algo", "pcwgan", "--steps", str(max(steps) + 10), "--ckpt-every", "10",
               "--resume", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        assert f["steps"]["step"][:, 0].tolist() == list(range(max(steps) + 10)) and "finished_at" in f.attrs
        assert f["labels"]["steps"][()].sum() == 2 * (max(steps) + 10)


# -- resumes that would mix runs -------------------------------------------------------------------
@pytest.fixture(scope="module")
def killed_and_resumed(launch, tmp_path_factory) -> dict:
    """A 2-rank run to 30 steps, checkpointing every 10, whose rank 1 is killed after agreeing on
    step 20 and before its rename, then resumed to the end: what each stage left behind."""
    out = tmp_path_factory.mktemp("killed") / "c.h5"
    ckpt = out.parent / (out.name + ".ckpt")
    killed, _ = run(launch, 2, *RUN, "--steps", "30", "--ckpt-every", "10", "--out", str(out),
                    env={"TEST_KILL_AFTER_AGREE": "1:2"})  # rank 1 dies agreeing on step 20, before its rename
    seen = {"killed": killed, "steps_killed": checkpoint_steps(out) if ckpt.exists() else None,
            "prev_rank0": torch.load(ckpt / "rank0.pt.prev", weights_only=True)["step"]
            if (ckpt / "rank0.pt.prev").exists() else None}
    seen["resumed"], _ = run(launch, 2, *RUN, "--steps", "30", "--ckpt-every", "10", "--resume", "--out", str(out))
    return {**seen, "out": out}


def test_a_kill_between_the_checkpoint_agreement_and_the_rename_resumes_from_the_step_every_rank_has(
        killed_and_resumed):
    r, out = killed_and_resumed["killed"], killed_and_resumed["out"]
    assert r.returncode != 0 and killed_and_resumed["steps_killed"] == [20, 10], r.stderr
    assert killed_and_resumed["prev_rank0"] == 10
    r = killed_and_resumed["resumed"]
    assert r.returncode == 0, r.stderr
    assert validate(str(out)) == [] and checkpoint_steps(out) == [30, 30]
    with h5py.File(out) as f:
        assert f["steps"]["step"].shape[0] == 30 and "finished_at" in f.attrs


def test_resuming_a_two_rank_run_on_one_rank_is_refused(launch, killed_and_resumed):
    """The finished 2-rank run (checkpoints at step 30) continued on 1 rank to more steps."""
    out = killed_and_resumed["out"]
    assert killed_and_resumed["resumed"].returncode == 0, killed_and_resumed["resumed"].stderr
    before = out.read_bytes()
    r, _ = run(launch, 1, *RUN, "--steps", "40", "--ckpt-every", "10", "--resume", "--out", str(out))
    assert r.returncode == 2 and "written by a job of 2 rank(s), this job has 1" in r.stderr, r.stderr
    assert out.read_bytes() == before


# -- a full disk -----------------------------------------------------------------------------------
def test_a_full_disk_while_flushing_is_one_line_and_keeps_whole_blocks(launch, tmp_path):
    out = tmp_path / "f.h5"
    r, _ = run(launch, 2, *RUN, "--steps", "100000", "--out", str(out), env={"TEST_DISK_FULL_AFTER": "3"})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert error_lines(r.stderr) == [f"hpcgan: error: cannot write {out}: no space left on device; it keeps the 30 "
                                     "rows flushed before"]
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        assert f["steps"]["step"].shape[0] == 30 and not np.isnan(f["steps"]["d_loss"][()]).any()
