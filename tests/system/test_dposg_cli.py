"""DPOSG from the command line: a short ring run writes consensus and rho; a bad W stops before training."""
import h5py
import numpy as np

from hpcgan.results.schema import validate

SHORT = ("train", "--algo", "dposg", "--optimizer", "omd", "--steps", "30", "--batch-size", "16", "--z-dim", "2",
         "--width", "16", "--flush-every", "10", "--consensus-every", "10", "--eval-samples", "400")


def test_ring_run_records_consensus_rho_and_both_evaluations(hpcgan, tmp_path):
    out = tmp_path / "ring.h5"
    r = hpcgan(2, *SHORT, "--topology", "ring", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        assert list(f["consensus"]["step"][()]) == [9, 19, 29]
        assert np.all(f["consensus"]["distance"][()] >= 0)
        assert f.attrs["topology"] == "ring" and f.attrs["spectral_gap"] == 1.0  # 2-ring = complete: rho 0
        assert "modes_covered" in f["eval"] and "modes_covered_rank0" in f["eval"]  # averaged model: plain names
        d = 2 * 16 + 16 + 2 * (16 * 16 + 16) + 16 * 2 + 2 + (2 * 16 + 16 + 2 * (16 * 16 + 16) + 17)
        assert np.all(f["steps"]["bytes_sent"][()] == 4 * d)  # one neighbour, one round


def test_invalid_W_file_is_one_clear_error_before_training(hpcgan, tmp_path):
    W = tmp_path / "W.txt"
    np.savetxt(W, [[0.9, 0.2], [0.2, 0.9]])
    out = tmp_path / "bad.h5"
    r = hpcgan(2, *SHORT, "--topology", str(W), "--out", str(out))
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "not doubly stochastic" in lines[0] and not out.exists()
