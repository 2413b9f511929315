"""The command line as a new user meets it: one error prefix and exit 2 for usage mistakes and missing
inputs, `hpcgan grid` drawing a mixture as a scatter, progress lines at least every 10 s on long
commands, and an eta that follows the recent pace rather than the median step."""
import functools
import json
import sys

from mpi4py import MPI
from PIL import Image

import hpcgan.benchmarks.recorder as bench_recorder
import hpcgan.sweep as sweep
from hpcgan.__main__ import main
from hpcgan.config import RunConfig
from hpcgan.grid import main as grid_main
from hpcgan.log import PROGRESS_EVERY, Eta, Progress
from hpcgan.train import Trainer
from hpcgan.world import init_world


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_usage_errors_and_missing_inputs_are_one_line_with_one_prefix_and_exit_2(capsys, tmp_path):
    assert main(["nosuch"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("hpcgan: error: argument command: invalid choice: 'nosuch'") and line.count("hpcgan") == 1
    assert main(["train", "--steps", "x"]) == 2
    assert one_error_line(capsys) == "hpcgan: error: train: argument --steps: invalid int value: 'x'"
    assert main(["bench", "recorder", "--bogus"]) == 2
    assert one_error_line(capsys) == "hpcgan: error: bench recorder: unrecognized arguments: --bogus"
    assert main(["validate", str(tmp_path / "missing.h5")]) == 2
    assert one_error_line(capsys) == f"hpcgan: error: no such file: {tmp_path / 'missing.h5'}"
    assert main(["grid", str(tmp_path / "missing.h5"), str(tmp_path / "x.png")]) == 2
    assert one_error_line(capsys).startswith("hpcgan: error: no final model in")
    assert grid_main([str(tmp_path / "missing.h5"), str(tmp_path / "x.png")]) == 2
    assert one_error_line(capsys).startswith("hpcgan: error: no final model in")


def test_grid_draws_a_mixture_as_a_scatter_and_says_so(tmp_path, capsys):
    out = tmp_path / "run.h5"
    cfg = RunConfig().replace(data={"data": "mog8:0.1", "batch_size": 16}, model={"width": 8, "z_dim": 2},
                              run={"out": str(out), "steps": 2, "eval_samples": 50})
    Trainer(cfg, init_world(MPI.COMM_SELF, set_threads=False)).run()
    capsys.readouterr()
    assert main(["grid", str(out), str(tmp_path / "g.png"), "--n", "300"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'g.png'}: scatter of 300 samples of mog8:0.1 over its modes"
    with Image.open(tmp_path / "g.png") as im:
        assert min(im.size) >= 400, f"a readable scatter, not a strip of pixels: {im.size}"
    assert grid_main([str(out), str(tmp_path / "h.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"grid": str(tmp_path / "h.png"), "kind": "scatter", "samples": 2000,
                                                   "per_row": 0, "data": "mog8:0.1"}


def test_eta_follows_the_recent_pace_not_the_median_step():
    now = [0.0]
    eta = Eta(window=60, clock=lambda: now[0])
    assert eta.line(100, 1000, fallback=0.01) == "  eta 9s", "no pace yet: 900 steps at the fallback 10 ms"
    for step in (200, 300, 400, 500):  # the machine got loaded (or evaluations ran): 100 steps per 20 s
        now[0] += 20.0
        text = eta.line(step, 1000, fallback=0.01)
    assert text == "  eta 100s", "500 steps at 0.2 s, whatever the median step time (10 ms) says"
    for step in (600, 700, 800):  # slower still: the pace of the last minute counts, not the whole run's
        now[0] += 40.0
        left = eta.seconds(step, 1000)
    assert left == 200 * 0.4
    assert eta.line(10, float("nan")) == "", "a time budget has no step total"


def test_long_commands_say_how_far_they_are_at_least_every_10_s(monkeypatch, caplog, tmp_path):
    assert PROGRESS_EVERY <= 10
    monkeypatch.setattr(bench_recorder, "Progress", functools.partial(Progress, every=0.0))
    monkeypatch.setattr(bench_recorder, "PROGRESS_CHECK", 100)
    with caplog.at_level("INFO", logger="hpcgan"):
        assert bench_recorder.bench_recorder(["--steps", "300", "--flush-every", "100"]) == 0
    assert any(r.getMessage().startswith("bench recorder: ") for r in caplog.records)

    caplog.clear()
    monkeypatch.setattr(sweep, "PROGRESS_EVERY", 0.2)
    child = [sys.executable, "-c", "import time; print('step 7 of 9', flush=True); time.sleep(1.5)"]
    with caplog.at_level("INFO", logger="hpcgan"):
        assert sweep.run_logged(child, tmp_path / "child.log", timeout=60) == 0
    beats = [r.getMessage() for r in caplog.records if "running for" in r.getMessage()]
    assert beats and beats[-1].endswith("step 7 of 9"), beats
    assert sweep.run_logged([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "slow.log", timeout=0.5) == 124
