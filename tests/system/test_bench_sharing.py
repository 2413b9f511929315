"""`hpcgan bench sharing`: calibrated work, the table, the HDF5 file the cost model reads."""
import h5py

from hpcgan.analysis import costmodel as cm


def test_sharing_bench_writes_what_the_cost_model_reads(hpcgan, tmp_path):
    out = tmp_path / "sharing_n1.hdf5"
    r = hpcgan(1, "bench", "sharing", "--work", "0.002,0.008", "--iters", "20", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "wall/cpu" in r.stdout and "(oversubscribed)" not in r.stdout
    with h5py.File(out) as f:
        assert f.attrs["world_size"] == 1 and not f.attrs["oversubscribed"]
        work, cpu = f["sharing/work"][()], f["sharing/cpu"][()]
        assert list(work) == [0.002, 0.008]
        assert all(0.5 * w < c < 2 * w for w, c in zip(work, cpu)), f"work sized by CPU time: {cpu}"
        assert (f["sharing/factor"][()] >= 0.9).all(), "a step is never faster than its CPU work"
    sharing = cm.read_sharing([out])[1]
    assert sharing.ranks == 1 and not sharing.oversubscribed and len(sharing.cpu) == 2


def test_bad_work_list_is_one_clear_error(hpcgan):
    r = hpcgan(1, "bench", "sharing", "--work", "1ms")
    assert r.returncode == 2 and "--work takes seconds" in r.stderr
