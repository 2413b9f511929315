"""A tiny real sweep (sync, 1 and 2 ranks, 12 steps): files, resumability and the report."""
import subprocess
import sys

import h5py

from helpers import write_comm_file
from hpcgan.results.schema import validate
from hpcgan.netmodel import NetworkModel
from hpcgan.analysis.report import write_report


def test_tiny_weak_sweep_writes_valid_files_resumes_and_reports(tmp_path):
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "hpcgan", "sweep", "--algos", "sync", "--ranks", "1,2", "--scaling", "weak",
           "--steps", "12", "--batch-size", "16", "--warmup-steps", "2", "--eval-samples", "100", "--threads", "1",
           "--no-comm-bench", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr
    files = sorted(out.glob("*.h5"))
    assert [f.name for f in files] == ["sync_weak_n1_r0.h5", "sync_weak_n2_r0.h5"]
    for f, ranks in zip(files, (1, 2)):
        assert validate(str(f)) == []
        with h5py.File(f) as h:
            assert (h.attrs["world_size"], h.attrs["local_batch"], h.attrs["global_batch"]) == (ranks, 16, 16 * ranks)
            assert h.attrs["scaling"] == "weak" and h.attrs["warmup_steps"] == 2

    write_comm_file(out / "comm_n2.hdf5", 2, 1e-5, 1e9)
    md = write_report([out], tmp_path / "report", NetworkModel(2e-6, 25e9, "chosen"))
    text = md.read_text()
    with h5py.File(files[0]) as h:
        assert f"Machine: {h.attrs['machine']}" in text
    assert "| 1 | 16 | 16 | 1 |" in text and "| 2 | 16 | 32 | 1 |" in text
    assert "alpha = 10.00 us, B = 1 GB/s" in text and "| weak | sync · 2 ranks |" in text and "M=2000" in text
    for figure in ("scaling_weak", "phases_weak", "quality_mog8"):
        for kind in (".png", ".pdf"):
            assert (tmp_path / "report" / (figure + kind)).stat().st_size > 1000

    with h5py.File(files[1], "a") as h:  # as if the 2-rank run had been killed
        del h.attrs["finished_at"]
    r = subprocess.run(cmd + ["--dry-run"], capture_output=True, text=True, timeout=120)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 1, r.stdout + r.stderr
    assert "-n 2 " in lines[0] and "sync_weak_n2_r0.h5 --force" in lines[0]
    assert "sync_weak_n1_r0        skipped" in r.stderr
