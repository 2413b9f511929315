"""`hpcgan bench overlap` in quick mode: the unbucketed and bucketed sync steps run under
--net-emulate delay, and every figure the target rests on is printed and stored (no timing is
judged here: benchmarks check targets, tests check that they are measured)."""
import h5py
import numpy as np


def test_quick_overlap_bench_measures_every_run_and_its_bound(hpcgan, tmp_path):
    out = tmp_path / "overlap.h5"
    r = hpcgan(2, "bench", "overlap", "--case", "mog8:mlp", "--bucket-mb", "0.01", "--steps", "2", "--warmup", "1",
               "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "unbucketed: compute C = " in r.stdout and "--net-emulate delay with alpha = 50 us" in r.stdout
    assert "target comm hidden by the bucketed sync step, --bucket-mb 0.01 (" in r.stdout
    assert "target at most hideable, the first bucket starting " in r.stdout
    assert "target at most hideable by any bucket plan on this step's gradient timeline, --bucket-mb 0.01" in r.stdout
    with h5py.File(out) as f:
        g = f["overlap"]
        assert list(g["bucket_mb"][()]) == [0.0, 0.01] and g["buckets"][0] == 1 and g["buckets"][1] > 1
        assert np.isnan(g["t_first_bucket"][0]) and g["t_first_bucket"][1] > 0  # only buckets start early
        assert g["t_comm_hidden"][0] == 0 and all(g["t_step"][()] > 0) and 0 <= g["hideable_fraction"][1] <= 1
        assert g["plan_bound"][0] == g["any_plan_bound"][0] == 0, "one bucket: no timeline, nothing hides"
        assert g["plan_bound"][1] <= g["any_plan_bound"][1] <= 1 and all(g["t_backward"][()] > 0)
        assert f.attrs["bandwidth"] > 0 and list(f["targets/lo"][()])[:1] == [0.6]


def test_one_rank_and_bad_sizes_are_one_clear_error(hpcgan):
    r = hpcgan(1, "bench", "overlap")
    assert r.returncode == 2 and "needs at least 2 ranks" in r.stderr
    r = hpcgan(2, "bench", "overlap", "--bucket-mb", "x")
    assert r.returncode == 2 and "--bucket-mb takes a comma list" in r.stderr


def test_the_bounds_follow_a_one_message_at_a_time_channel():
    from hpcgan.benchmarks.overlap import overlap_bounds, serial_finish
    assert serial_finish([0, 0, 5], [1, 1, 1]) == 6 and serial_finish([], []) == 0
    # two tensors of 1 and 3 bytes, gradients at 0.2 and 0.5, backward ends at 1, comm takes 1 in all:
    # as two buckets the second leaves after backward (1 + 0.75); alone, each leaves when ready (0.5 + 0.75)
    plan, anyplan = overlap_bounds([0.2, 0.5], [0.2, 0.5], 1.0, [1, 3], [1, 3], 1.0)
    assert (round(plan, 9), round(anyplan, 9)) == (0.25, 0.75)
    # one bucket of both: it leaves after backward, nothing hides; early tiny comm hides whole (capped at 1)
    assert overlap_bounds([0.2, 0.5], [0.5], 1.0, [1, 3], [4], 1.0)[0] == 0
    assert [round(b, 9) for b in overlap_bounds([0.1, 0.2], [0.1, 0.2], 1.0, [1, 1], [1, 1], 0.01)] == [0.5, 1.0]
