"""`hpcgan bench comm` in quick mode: the table, the HDF5 layout, bad names."""
import h5py

from hpcgan.compress import COMPRESSORS


def test_quick_bench_prints_the_table_and_writes_hdf5(hpcgan, tmp_path):
    out = tmp_path / "comm.h5"
    r = hpcgan(2, "bench", "comm", "--backends", "mpi", "--min-size", "4KiB", "--max-size", "4KiB", "--iters", "2",
               "--out", str(out))
    assert r.returncode == 0, r.stderr
    ops = [n for n in COMPRESSORS.names() if n != "identity"]
    lines = [line.split() for line in r.stdout.splitlines()]
    assert {row[1] for row in lines if row[:1] == ["mpi"]} == {"dense", *ops}
    assert "target wire bytes dense/sign" in r.stdout
    with h5py.File(out) as f:
        comm, comp = f["comm"], f["compress"]
        n_sizes = 1
        assert comm["op"].shape == ((1 + len(ops)) * n_sizes,)
        assert comp["op"].shape == (len(ops) * n_sizes,)
        assert (comm["t_median"][()] > 0).all() and f.attrs["world_size"] == 2
        rows = {(o.decode(), int(s)): int(w) for o, s, w in zip(comm["op"][()], comm["size"][()], comm["wire_bytes"][()])}
        assert rows[("dense", 4096)] == 4096 and rows[("sign", 4096)] == 4096 // 32 + 4
        assert rows[("topk", 4096)] == 8 * 11


def test_unknown_backend_is_one_clear_error(hpcgan):
    r = hpcgan(2, "bench", "comm", "--backends", "nccl2", "--max-size", "1KiB")
    assert r.returncode == 2 and "unknown backend 'nccl2'; valid: horovod, mpi, torch" in r.stderr
    assert r.stderr.count("hpcgan: error:") == 1
