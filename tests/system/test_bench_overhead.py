"""`hpcgan bench overhead` in quick mode: hpcgan's step and every peer's (plain, DDP, Horovod) run,
do the same arithmetic, and each ratio is printed and stored."""
import h5py


def test_quick_overhead_bench_compares_sync_with_every_peer(hpcgan, tmp_path):
    out = tmp_path / "overhead.h5"
    r = hpcgan(2, "bench", "overhead", "--cases", "mog8:mlp", "--steps", "4", "--warmup", "1", "--flush-every", "2",
               "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[1]: line.split() for line in r.stdout.splitlines() if line.split()[:1] == ["mog8:mlp"]}
    horovod_skipped = "peer horovod skipped: backend 'horovod' needs Horovod" in r.stdout
    assert set(rows) == {"plain", "ddp"} | (set() if horovod_skipped else {"horovod"}), r.stdout
    for peer, row in rows.items():
        assert row[-1] == "yes", f"hpcgan's sync and the {peer} step end with the same parameters"
        assert float(row[2]) > 0 and float(row[3]) > 0 and abs(float(row[4]) - float(row[2]) / float(row[3])) < 2e-3
    for label in ("plain PyTorch", "torch DDP (gloo)") + (() if horovod_skipped else ("Horovod DistributedOptimizer",)):
        assert f"target sync step / {label} step on mog8:mlp at 2 ranks" in r.stdout
    with h5py.File(out) as f:
        assert sorted(p.decode() for p in f["overhead/peer"][()]) == sorted(rows)
        assert {c.decode() for c in f["overhead/case"][()]} == {"mog8:mlp"}
        assert all(f["overhead/same_params"][()] == 1) and all(f["overhead/ratio"][()] > 0)
        assert list(f["targets/hi"][()]) == [1.05] * len(rows)


def test_bad_cases_and_peers_are_one_clear_error(hpcgan):
    r = hpcgan(2, "bench", "overhead", "--cases", "mog8")
    assert r.returncode == 2 and "--cases takes DATA:MODEL" in r.stderr
    r = hpcgan(2, "bench", "overhead", "--peers", "plain,deepspeed")
    assert r.returncode == 2 and "unknown overhead peer 'deepspeed'; valid: ddp, horovod, plain" in r.stderr
