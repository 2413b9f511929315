"""`hpcgan bench overhead` in quick mode: both steps run, do the same arithmetic, the ratio is printed and stored."""
import h5py


def test_quick_overhead_bench_compares_sync_with_plain_pytorch(hpcgan, tmp_path):
    out = tmp_path / "overhead.h5"
    r = hpcgan(2, "bench", "overhead", "--cases", "mog8:mlp", "--steps", "4", "--warmup", "1", "--flush-every", "2",
               "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    row = next(line.split() for line in r.stdout.splitlines() if line.split()[:1] == ["mog8:mlp"])
    assert row[-1] == "yes", "hpcgan's sync and the plain step end with the same parameters"
    assert float(row[1]) > 0 and float(row[2]) > 0 and abs(float(row[3]) - float(row[1]) / float(row[2])) < 2e-3
    assert "target sync step / plain PyTorch step on mog8:mlp at 2 ranks" in r.stdout
    with h5py.File(out) as f:
        assert [c.decode() for c in f["overhead/case"][()]] == ["mog8:mlp"]
        assert f["overhead/same_params"][0] == 1 and f["overhead/ratio"][0] > 0
        assert f["targets/hi"][0] == 1.05


def test_bad_cases_are_one_clear_error(hpcgan):
    r = hpcgan(2, "bench", "overhead", "--cases", "mog8")
    assert r.returncode == 2 and "--cases takes DATA:MODEL" in r.stderr
