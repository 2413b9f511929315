"""``hpcgan eval`` as users run it: a run's final model on any rank count, checkpoints, missing weights."""
import json

import h5py

from hpcgan.metrics.inception import INCEPTION_SHA256
from hpcgan.results.schema import validate


def test_eval_of_a_run_on_any_rank_count_goes_into_its_file_and_checkpoints_still_work(hpcgan, tmp_path):
    out = tmp_path / "run.h5"
    r = hpcgan(2, "train", "--steps", "20", "--batch-size", "16", "--ckpt-every", "20", "--flush-every", "10",
               "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "run.h5.model").iterdir()) == ["rank0.pt"]  # sync: one model
    r = hpcgan(2, "eval", str(out), "--samples", "1000", "--out", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "m.json").read_text())
    assert got["step"] == 20 and got["samples"] == 1000 and 0 <= got["modes_covered"] <= 8
    assert "modes_covered" in r.stdout and r.stdout.count("hq_fraction") == 1  # rank 0 alone prints
    assert validate(str(out)) == []
    with h5py.File(out) as f:
        g = f["final_eval"]
        assert g["modes_covered"][()] == got["modes_covered"] and g.attrs["samples"] == 1000
        assert g.attrs["step"] == 20 and g.attrs["eval_ranks"] == 2 and g.attrs["weights_sha256"] == got["weights_sha256"]
    r = hpcgan(1, "eval", str(out), "--samples", "500")  # the final model: any rank count
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        assert f["final_eval"].attrs["eval_ranks"] == 1 and f["final_eval"].attrs["samples"] == 500
    r = hpcgan(1, "eval", str(tmp_path / "run.h5.ckpt"), "--samples", "100")
    assert r.returncode == 2 and "evaluate on 2 ranks" in r.stderr
    r = hpcgan(2, "eval", str(tmp_path / "run.h5.ckpt"), "--samples", "100")
    assert r.returncode == 0 and "modes_covered" in r.stdout, r.stderr
    with h5py.File(out) as f:
        assert f["final_eval"].attrs["samples"] == 500, "a checkpoint's evaluation is printed, not recorded"


def test_inception_metrics_without_weights_explain_how_to_stage_them(hpcgan, tmp_path):
    r = hpcgan(1, "eval", "--real", "--data", "digits", "--metrics", "inception",
               "--inception-weights", str(tmp_path / "missing.pth"), env={"HPCGAN_CACHE": str(tmp_path)})
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "not found" in lines[0] and INCEPTION_SHA256 in lines[0] and "offline" in lines[0]
