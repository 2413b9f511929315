"""pcwgan from the command line: a short 2-rank budget run writes a valid file with /labels."""
import h5py
import numpy as np

from hpcgan.results.schema import validate


def test_two_rank_budget_run_records_owners_steps_and_zero_bytes(hpcgan, tmp_path):
    out = tmp_path / "pcw.h5"
    r = hpcgan(2, "train", "--algo", "pcwgan", "--data", "mog8", "--budget", "3", "--batch-size", "16",
               "--width", "32", "--lr", "1e-4", "--beta2", "0.9", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        owner, label_steps = f["labels"]["owner"][()], f["labels"]["steps"][()]
        step, sent, t_comm = (f["steps"][k][()] for k in ("step", "bytes_sent", "t_comm"))
        assert "finished_at" in f.attrs and "modes_covered" in f["eval"]
    assert owner.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    rows = (step >= 0).sum(axis=0)  # ranks stop on their own clocks: columns may be ragged
    assert rows.min() > 0 and [label_steps[owner == r].sum() for r in (0, 1)] == rows.tolist()
    assert np.all(sent[step >= 0] == 0) and np.all(t_comm[step >= 0] == 0)



def test_labels_flag_gives_pcwgan_only_the_first_k_labels(hpcgan, tmp_path):
    out = tmp_path / "pcw4.h5"
    r = hpcgan(2, "train", "--algo", "pcwgan", "--data", "mog8", "--labels", "4", "--budget", "2",
               "--batch-size", "16", "--width", "32", "--out", str(out))
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        assert f["labels"]["owner"][()].tolist() == [0, 1, 0, 1]
