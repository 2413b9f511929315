"""``hpcgan eval`` as users run it: a run's checkpoint, rank-count rules, missing weights."""
import json

from hpcgan.metrics.inception import INCEPTION_SHA256


def test_eval_of_a_checkpointed_run(hpcgan, tmp_path):
    out = tmp_path / "run.h5"
    r = hpcgan(2, "train", "--steps", "20", "--batch-size", "16", "--ckpt-every", "20", "--flush-every", "10",
               "--out", str(out))
    assert r.returncode == 0, r.stderr
    r = hpcgan(2, "eval", str(out), "--samples", "1000", "--out", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "m.json").read_text())
    assert got["step"] == 20 and got["samples"] == 1000 and 0 <= got["modes_covered"] <= 8
    assert "modes_covered" in r.stdout and r.stdout.count("hq_fraction") == 1  # rank 0 alone prints
    r = hpcgan(1, "eval", str(out), "--samples", "100")
    assert r.returncode == 2 and "evaluate on 2 ranks" in r.stderr


def test_inception_metrics_without_weights_explain_how_to_stage_them(hpcgan, tmp_path):
    r = hpcgan(1, "eval", "--real", "--data", "digits", "--metrics", "inception",
               "--inception-weights", str(tmp_path / "missing.pth"), env={"HPCGAN_CACHE": str(tmp_path)})
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "not found" in lines[0] and INCEPTION_SHA256 in lines[0] and "offline" in lines[0]
