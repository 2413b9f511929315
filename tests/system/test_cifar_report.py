"""A new user's path on CIFAR-format data: the real pickle batches converted with data_prep/prepare.py,
a 2-rank run of each of the five algorithms, ``hpcgan eval`` of them all, then ``hpcgan report``:
one table with the same metric for every algorithm, a plot with all five, honest throughput, and
grids of the conditional models with one row per class."""
import re
import sys
from pathlib import Path

import h5py
from PIL import Image

from helpers import make_cifar10
from hpcgan.__main__ import main
from hpcgan.analysis.plots import slug
from hpcgan.analysis.report import write_report
from hpcgan.netmodel import NetworkModel
from hpcgan.results.reader import load_run
from hpcgan.results.schema import validate

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from data_prep import prepare  # noqa: E402

ALGOS = ("sync", "dqgan", "dposg", "pcwgan", "cwgan")
BATCH = 4
TINY = ["--model", "dcgan32", "--width", "8", "--z-dim", "16", "--batch-size", str(BATCH), "--steps", "3",
        "--warmup-steps", "1", "--eval-samples", "100"]


def test_five_algorithms_on_cifar_format_data_report_one_metric(hpcgan, tmp_path, capsys):
    make_cifar10(tmp_path / "src", per_batch=60)  # 300 training images, 30 per class
    data = tmp_path / "cifar10.h5"
    assert prepare.main(["cifar10", str(tmp_path / "src"), "--out", str(data), "--quiet"]) == 0
    assert main(["eval", "--train-proxy", "--data", f"h5:{data}", "--epochs", "1"]) == 0

    runs = tmp_path / "runs"
    for algo in ALGOS:
        r = hpcgan(2, "train", "--algo", algo, "--data", f"h5:{data}", *TINY, "--out", str(runs / f"{algo}.h5"),
                   timeout=300)
        assert r.returncode == 0, r.stderr
        assert "<" not in r.stderr, r.stderr  # no placeholder in the log
    r = hpcgan(2, "eval", *(str(runs / f"{a}.h5") for a in ALGOS), "--samples", "200", timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("proxy_is:") == 5 and "mean ± std over 10 splits" in r.stdout

    for algo in ALGOS:
        assert validate(str(runs / f"{algo}.h5")) == [], algo
        run = load_run(runs / f"{algo}.h5")
        q = run.quality()
        assert (q.source, q.samples, q.is_splits) == ("hpcgan eval", 200, 10) and "proxy_fid" in q.values, algo
        per_step = 5 * BATCH if algo in ("cwgan", "pcwgan") else BATCH  # n_critic batches of reals per step
        assert run.samples_per_step("real") == 2 * per_step, algo

    md = write_report([runs], tmp_path / "report", NetworkModel(2e-6, 25e9, "chosen")).read_text()
    print(md)
    quality = md[md.index("## Quality"):md.index("## Time to quality")]
    assert "proxy_fid (lower is better)" in quality and "Not in the quality table" not in quality
    rows = [line for line in quality.splitlines() if re.match(r"\| (sync|dqgan|dposg|pcwgan|cwgan) ·", line)]
    assert sorted(line.split(" · ")[0][2:] for line in rows) == sorted(ALGOS)
    assert "| dqgan · sign · 2 ranks |" in quality and "| dposg · ring · 2 ranks |" in quality
    assert all("| 1 |" in line and "200 samples (hpcgan eval)" in line for line in rows), rows
    with Image.open(tmp_path / "report" / f"quality_{slug('h5:' + str(data))}.png") as im:
        shown = im.info["Description"]
    assert all(f"{a} · " in shown for a in ALGOS) and "not shown" not in shown

    for algo in ("cwgan", "pcwgan"):  # one row per class: 10 rows of --n // 10 samples
        assert main_grid([str(runs / f"{algo}.h5"), str(tmp_path / f"{algo}.png"), "--n", "20"]) == 0
        with Image.open(tmp_path / f"{algo}.png") as im:
            assert im.size == (2 * 34 + 2, 10 * 34 + 2), algo
    with h5py.File(runs / "dposg.h5") as f:
        assert {"proxy_fid", "proxy_fid_rank0"} <= set(f["final_eval"])


def main_grid(argv):
    from hpcgan.grid import main as grid

    grid(argv)
    return 0
