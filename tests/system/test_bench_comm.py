"""`hpcgan bench comm` in quick mode: the table, the peers, the target lines, the HDF5 layout, bad names."""
import h5py

from hpcgan.compress import COMPRESSORS


def test_quick_bench_prints_the_table_peers_and_targets_and_writes_hdf5(hpcgan, tmp_path):
    out = tmp_path / "comm.h5"
    r = hpcgan(2, "bench", "comm", "--backends", "mpi,torch", "--min-size", "4KiB", "--max-size", "4KiB",
               "--iters", "2", "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    ops = [n for n in COMPRESSORS.names() if n != "identity"]
    peers = {"torch-fp16-hook", "torch-powersgd-hook"}
    lines = [line.split() for line in r.stdout.splitlines()]
    assert {row[1] for row in lines if row[:1] == ["mpi"]} == {"dense", *ops}
    assert {row[1] for row in lines if row[:1] == ["torch"]} == {"dense", *ops, *peers}
    targets = [line for line in r.stdout.splitlines() if line.startswith("target ")]
    for op in ops:
        assert any(t.startswith(f"target {op} slower call") for t in targets), op
    assert any("target wire bytes dense/sign" in t for t in targets)
    assert sum("topk kept / k on dcgan32/digits gradients" in t for t in targets) == 1
    assert sum(t.startswith("target peer torch: hpcgan") for t in targets) == 2
    with h5py.File(out) as f:
        comm, comp, tgt = f["comm"], f["compress"], f["targets"]
        assert comm["op"].shape == ((1 + len(ops)) * 2 + len(peers),)
        assert comp["op"].shape == (len(ops),)
        assert (comm["t_median"][()] > 0).all() and f.attrs["world_size"] == 2
        rows = {(b.decode(), o.decode()): int(w) for b, o, w in zip(comm["backend"][()], comm["op"][()],
                                                                   comm["wire_bytes"][()])}
        assert rows[("mpi", "dense")] == 4096 and rows[("mpi", "sign")] == 4096 // 32 + 4
        assert rows[("mpi", "topk")] == 8 * 11 and rows[("torch", "torch-fp16-hook")] == 2048
        assert rows[("mpi", "powersgd")] == rows[("torch", "torch-powersgd-hook")] == 4 * 4 * (32 + 32)
        kept = dict(zip([o.decode() for o in comp["op"][()]], comp["kept"][()]))
        assert kept["topk"] == kept["topk-torch"] == 11
        assert tgt["name"].shape == (len(targets),) and set(tgt["met"][()]) <= {-1, 0, 1}


def test_unknown_backend_is_one_clear_error(hpcgan):
    r = hpcgan(2, "bench", "comm", "--backends", "nccl2", "--max-size", "1KiB")
    assert r.returncode == 2 and "unknown backend 'nccl2'; valid: horovod, mpi, torch" in r.stderr
    assert r.stderr.count("hpcgan: error:") == 1
