"""What a paper's reader needs from the report: configurations named by what ran, oversubscribed runs
flagged, never a ranking on a saturated metric, time to quality at scale from measured curves and the
cost model (with its overlap term), and figures written as PNG and PDF at one column width."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from helpers import fake_run
from hpcgan.analysis import costmodel as cm
from hpcgan.analysis.quality import quality_table
from hpcgan.analysis.report import write_report
from hpcgan.analysis.runs import comm_split, label, oversubscription, overlap_fraction
from hpcgan.analysis.summary import summarize
from hpcgan.analysis.ttq import Target, steps_to, time_to_quality
from hpcgan.netmodel import NetworkModel


def mog_run(algo: str, seed: int, modes: list[float], hq: list[float], ranks: int = 2, compressor: str = "none",
            topology: str = "none", affinity: str = "0-1", wall: float = 0.01):
    """A finished 2000-step run on mog8 evaluated at steps 500..2000 with these values."""
    run = fake_run(algo, "none", ranks, seed, wall, 8)
    n = 2000
    run.steps = {k: np.repeat(v[:1], n, axis=0) for k, v in run.steps.items()}
    run.steps["wall"][:] = wall
    run.steps["step"] = np.repeat(np.arange(n)[:, None], ranks, axis=1)
    run.steps["elapsed"] = np.repeat((wall * np.arange(1, n + 1))[:, None], ranks, axis=1)
    run.steps["bytes_sent"] = np.full((n, ranks), 1000, dtype=np.int64)
    run.attrs.update(compressor=compressor, topology=topology, machine="test machine (2 cores), cpu",
                     ranks_json=json.dumps([{"host": "vm", "threads": 1, "device": "cpu", "cpu_affinity": affinity}]
                                           * ranks))
    run.config = {"run": {"seed": seed}, "data": {"data": "mog8:0.1"}, "algo": {"algo": algo},
                  "comm": {"compressor": compressor}}
    steps = np.array([500, 1000, 1500, 2000])
    run.eval = {"step": steps, "modes_covered": np.array(modes, float), "hq_fraction": np.array(hq, float),
                "mode_kl": np.full(4, 0.01)}
    run.eval_attrs = {"samples": 2500, "is_splits": 1}
    return run


def test_labels_name_algorithm_compressor_topology_and_ranks_and_flag_oversubscription(monkeypatch):
    dq = mog_run("dqgan", 0, [8] * 4, [0.5] * 4, compressor="sign")
    ring = mog_run("dposg", 0, [8] * 4, [0.5] * 4, ranks=4, topology="ring")
    assert label(dq) == "dqgan · sign · 2 ranks" and label(ring) == "dposg · ring · 4 ranks"
    assert "none" not in label(mog_run("sync", 0, [8] * 4, [0.5] * 4))
    assert oversubscription(dq) is None
    assert oversubscription(ring) == "4 ranks on 2 cores of vm"
    gpus = mog_run("sync", 0, [8] * 4, [0.5] * 4, affinity="0-15")
    gpus.attrs["ranks_json"] = json.dumps([{"host": "n1", "threads": 1, "device": "cuda:0", "gpu_uuid": "GPU-a",
                                            "cpu_affinity": "0-15"}] * 2)
    assert oversubscription(gpus) == "2 ranks on 1 GPU of n1"
    monkeypatch.setattr("hpcgan.analysis.summary.read_runs", lambda paths: ([dq, ring], []))
    text = summarize(["x"])
    assert "dposg · ring · 4 ranks ⚠" in text and "4 ranks on 2 cores of vm" in text
    assert "KB/rank/step" in text and "dqgan · sign · 2 ranks " in text


def test_a_saturated_metric_gives_way_to_the_next_finer_one():
    runs = [mog_run("sync", s, [6, 8, 8, 8], [0.2, 0.5, 0.6, 0.7 + 0.01 * s]) for s in range(3)]
    runs += [mog_run("dqgan", s, [5, 7, 8, 8], [0.1, 0.3, 0.5, 0.6 + 0.01 * s], compressor="sign") for s in range(3)]
    table = quality_table(runs)
    assert table.metrics["mog8:0.1"].name == "hq_fraction", "8 of 8 modes for every arm ranks nothing"
    assert "modes_covered is saturated" in table.notes["mog8:0.1"] and "8 of 8" in table.notes["mog8:0.1"]
    assert table.saturated == {"mog8:0.1": "modes_covered"}
    weak = mog_run("pcwgan", 0, [2, 3, 3, 3], [0.1, 0.2, 0.3, 0.3])
    table = quality_table(runs + [weak])
    assert table.metrics["mog8:0.1"].name == "hq_fraction", "the best two tie at 8 of 8, whatever pcwgan reaches"
    assert "dqgan · sign · 2 ranks, sync · 2 ranks sit at its best value" in table.notes["mog8:0.1"]
    runs[0].eval["modes_covered"][-1] = 7  # one seed short of the ceiling: only one configuration at the top
    assert quality_table(runs).metrics["mog8:0.1"].name == "modes_covered" and not quality_table(runs).notes


def test_steps_to_quality_interpolates_between_evaluations():
    run = mog_run("sync", 0, [8] * 4, [0.2, 0.4, 0.6, 0.8])
    assert steps_to(run, Target("d", "hq_fraction", 0.5, True)) == pytest.approx(1250)
    assert steps_to(run, Target("d", "hq_fraction", 0.1, True)) == 500
    assert math.isnan(steps_to(run, Target("d", "hq_fraction", 0.9, True)))
    assert steps_to(run, Target("d", "mode_kl", 0.05, False)) == 500


def test_overlap_hides_communication_only_behind_compute():
    assert cm.step_time(0.01, 0.004, 0.0) == pytest.approx(0.014)
    assert cm.step_time(0.01, 0.004, 0.5) == pytest.approx(0.012)
    assert cm.step_time(0.001, 0.004, 1.0) == pytest.approx(0.004), "hidden <= compute"
    with pytest.raises(ValueError):
        cm.step_time(0.01, 0.004, 1.5)
    run = mog_run("sync", 0, [8] * 4, [0.5] * 4)
    run.steps["t_comm"][:] = 0.002
    assert comm_split(run) == (pytest.approx(0.002), 0.0) and overlap_fraction([run]) is None, "older files hid nothing"
    run.steps["t_comm_hidden"] = np.full_like(run.steps["t_comm"], 0.006)
    assert comm_split(run) == (pytest.approx(0.002), pytest.approx(0.006))
    assert overlap_fraction([run]) == pytest.approx(0.75)


def test_time_to_quality_at_scale_is_measured_steps_times_modelled_step_time():
    runs = [mog_run("sync", s, [8] * 4, [0.2, 0.4, 0.6, 0.8], wall=0.01 + 0.001 * s) for s in range(3)]
    table = quality_table(runs)
    net = NetworkModel(2e-6, 25e9, "chosen")
    (answer,) = time_to_quality(table, net, overlap=0.0, target=0.5)
    assert answer.reached == 3 and answer.steps.mean == pytest.approx(1250)
    work = cm.workload(runs)
    for n in (64, 512, 2000):
        expect = [1250 * (0.01 + 0.001 * s + cm.comm_time("sync", net, n, work)) for s in range(3)]
        assert answer.time[n].mean == pytest.approx(np.mean(expect))
        assert answer.time[n].half_width > 0
    assert answer.time[2000].mean > answer.time[64].mean
    hidden = time_to_quality(table, net, overlap=1.0, target=0.5)[0]
    assert hidden.time[64].mean < answer.time[64].mean and hidden.overlap_source == "given"


def test_report_has_figures_as_png_and_pdf_at_column_width_and_the_time_to_quality_table(tmp_path, monkeypatch):
    runs = [mog_run("sync", s, [8] * 4, [0.2, 0.4, 0.6, 0.8 - 0.02 * s]) for s in range(2)]
    runs += [mog_run("dposg", 0, [8] * 4, [0.1, 0.3, 0.5, 0.7], ranks=4, topology="ring")]
    monkeypatch.setattr("hpcgan.analysis.report.load_runs", lambda paths: (runs, [], []))
    md = write_report(["x"], tmp_path, NetworkModel(2e-6, 25e9, "chosen")).read_text()
    assert "modes_covered is saturated" in md and "### mog8:0.1: hq_fraction" in md
    assert ("| configuration | seeds | hq_fraction | per seed | modes_covered | updates per model | rank-seconds "
            "| evaluation |") in md
    assert "## Time to quality at scale" in md and "time to Q at N=2000" in md and "dposg · ring · 4 ranks ⚠" in md
    assert "- measured on this machine:" in md and "- modelled:" in md and "comm hidden [ms]" in md
    for name in ("quality_mog8_0.1", "time_to_quality", "phases_none"):
        assert (tmp_path / f"{name}.pdf").stat().st_size > 1000
        with Image.open(tmp_path / f"{name}.png") as im:
            assert im.size[0] <= 4.2 * 200, f"{name} is wider than a column ({im.size[0]} px at 200 dpi)"
    with Image.open(tmp_path / "quality_mog8_0.1.png") as im:
        assert "sync · 2 ranks (2 seeds)" in im.info["Description"]
