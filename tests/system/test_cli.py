"""The command line as users run it: mpiexec, exit codes, messages, faults, kill -9."""
import os
import signal
import subprocess
import sys
import time

import h5py
import pytest

from helpers import hpcgan_cmd
from hpcgan.results.schema import validate

SHORT = ("train", "--steps", "40", "--batch-size", "16", "--flush-every", "10", "--log-every", "20")


def test_info_lists_every_rank(hpcgan):
    r = hpcgan(2, "info")
    assert r.returncode == 0, r.stderr
    for key in ("python", "torch", "torchvision", "mpi4py", "mpi_library", "h5py"):
        assert key in r.stdout
    assert "rank    0" in r.stdout and "rank    1" in r.stdout and "world size: 2" in r.stdout


def test_two_rank_run_writes_a_valid_file_and_refuses_to_overwrite_it(hpcgan, tmp_path):
    out = tmp_path / "run.h5"
    r = hpcgan(2, *SHORT, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        assert f["steps"]["wall"].shape == (40, 2) and "finished_at" in f.attrs
        assert f.attrs["global_batch"] == 32 and "modes_covered" in f["eval"]
    before = out.read_bytes()
    r = hpcgan(2, *SHORT, "--out", str(out))
    assert r.returncode == 2 and "exists" in r.stderr and out.read_bytes() == before
    assert r.stderr.count("hpcgan: error:") == 1  # rank 0 alone reports it


@pytest.mark.parametrize("flag, value, valid", [("--data", "cifar11", "mog8"), ("--algo", "gossip", "sync"),
                                                ("--model", "vgg", "mlp")])
def test_unknown_names_give_one_line_listing_valid_names(hpcgan, tmp_path, flag, value, valid):
    r = hpcgan(2, *SHORT, flag, value, "--out", str(tmp_path / "x.h5"))
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert f"'{value}'" in lines[0] and valid in lines[0]


FAULT = """
import sys
from mpi4py import MPI
from hpcgan.algorithms.sync import Sync
step = Sync.step
def faulty(self, batch, t):
    if t == 5 and MPI.COMM_WORLD.rank == 1:
        raise RuntimeError("injected fault")
    return step(self, batch, t)
Sync.step = faulty
from hpcgan.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_rank_raising_takes_the_job_down_quickly(tmp_path):
    script = tmp_path / "fault.py"
    script.write_text(FAULT)
    cmd = hpcgan_cmd(2, *SHORT, "--steps", "100000", "--out", str(tmp_path / "f.h5"), python_args=(str(script),))
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and time.monotonic() - t0 < 30
    assert "rank 1 of 2 failed" in r.stderr and "injected fault" in r.stderr


def test_kill_9_leaves_a_readable_file_missing_at_most_one_flush(tmp_path):
    out = tmp_path / "killed.h5"
    cmd = hpcgan_cmd(2, *SHORT, "--steps", "1000000", "--flush-every", "25", "--out", str(out))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    for line in proc.stdout:  # wait until training is well under way
        if "step 200 " in line or time.monotonic() > deadline:
            break
    time.sleep(0.5)
    # kill -9 every process of the job, as a batch system does: launcher and ranks alike
    subprocess.run(["pkill", "-9", "-f", str(out)], check=False)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    while subprocess.run(["pgrep", "-f", str(out)], capture_output=True).returncode == 0:
        time.sleep(0.1)
    deadline = time.monotonic() + 20  # killed ranks release the file lock once their threads are gone
    while "unable to lock" in "".join(validate(str(out))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        rows = f["steps"]["step"].shape[0]
        assert "finished_at" not in f.attrs
    assert rows >= 200 and rows % 25 == 0  # whole flush blocks only: at most one interval lost
