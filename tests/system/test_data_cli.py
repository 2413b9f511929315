"""Converted data through the real command lines: prepare.py, then a 2-rank `hpcgan train` and
`hpcgan bench data` reading the file."""
import subprocess
import sys
from pathlib import Path

import h5py

from hpcgan.results.schema import validate

ROOT = Path(__file__).resolve().parents[2]


def test_train_two_ranks_from_converted_digits(hpcgan, tmp_path):
    data = tmp_path / "data/digits.h5"
    r = subprocess.run([sys.executable, str(ROOT / "data_prep/prepare.py"), "digits", "-", "--out", str(data)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "1797 images" in r.stdout, r.stderr
    out = tmp_path / "run.h5"
    r = hpcgan(2, "train", "--data", f"h5:{data}", "--steps", "12", "--batch-size", "16", "--flush-every", "4",
               "--shard", "uneven", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        assert f["steps"]["d_loss"].shape == (12, 2) and "finished_at" in f.attrs


def test_bench_data_reports_loader_and_consumption_rates(hpcgan):
    r = hpcgan(2, "bench", "data", "--synthetic", "400", "--batches", "5", "--steps", "1", "--width", "8")
    assert r.returncode == 0, r.stderr
    assert "consumption = D+G forward/backward" in r.stdout and "target >= 20x" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert len(rows) == 2 and all(float(row[1]) > 0 and float(row[3]) > 0 for row in rows), r.stdout
