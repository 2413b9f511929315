"""What the report and summary let a reader trust: one quality metric per dataset with its spread
over seeds, runs left out named with the reason, warnings on suspect scaling numbers, and the cost
model's score counting only the rows it predicts."""
import math

import numpy as np
import pytest

from helpers import fake_run, write_comm_file
from hpcgan.__main__ import main
from hpcgan.analysis.quality import quality_table
from hpcgan.analysis.report import costmodel_section, quality_section
from hpcgan.analysis.scaling import scaling_rows
from hpcgan.analysis.summary import over_seeds
from hpcgan.errors import UsageError
from hpcgan.log import Progress
from hpcgan.metrics.names import base_name, headline


def with_quality(run, data: str, seed: int, training: dict | None = None, final: dict | None = None,
                 samples: int = 50000):
    """``run`` evaluated during training (``training``) and/or by ``hpcgan eval`` (``final``)."""
    run.config = {"run": {"seed": seed, "eval_samples": 100}, "data": {"data": data}}
    if training:
        run.eval = {"step": np.array([12]), **{k: np.array([v]) for k, v in training.items()}}
        run.eval_attrs = {"samples": 100, "is_splits": 10}
    if final:
        run.final_eval = dict(final)
        run.final_eval_attrs = {"samples": samples, "step": 12, "is_splits": 10}
    return run


def test_one_metric_per_dataset_for_every_algorithm_with_spread_over_seeds():
    img = "h5:cifar10.h5"
    runs = [with_quality(fake_run(a, "none", 2, s, 1.0, 8), img, s,
                         training={"proxy_class_consistency": 0.5, "proxy_fid": 40.0 + s},
                         final={"proxy_fid": 30.0 + s} if a == "sync" else None)
            for a in ("sync", "cwgan") for s in (0, 1, 2)]
    runs += [with_quality(fake_run("dposg", "none", 2, 0, 1.0, 8), img, 0, training={"proxy_fid_rank0": 1.0}),
             with_quality(fake_run("dqgan", "none", 2, 0, 1.0, 8), img, 0),
             with_quality(fake_run("sync", "none", 2, 0, 1.0, 8), "mog8", 0,
                          training={"hq_fraction": 0.9, "modes_covered": 7.0, "mode_kl": 0.1})]
    table = quality_table(runs)
    assert {d: m.name for d, m in table.metrics.items()} == {img: "proxy_fid", "mog8": "modes_covered"}
    rows = {(r.dataset, r.algo): r for r in table.rows}
    sync, cwgan = rows[(img, "sync")], rows[(img, "cwgan")]
    assert sync.estimate.n == 3 and sync.estimate.mean == pytest.approx(31.0), "hpcgan eval's figure is preferred"
    assert sync.estimate.half_width == pytest.approx(4.302652729911275 / math.sqrt(3)) and "50000 samples" in sync.evaluations
    assert cwgan.estimate.mean == pytest.approx(41.0) and cwgan.evaluations == "100 samples (training)"
    missing = {r.attrs["algorithm"]: why for r, why in table.missing}
    assert set(missing) == {"dposg", "dqgan"}
    assert "not proxy_fid" in missing["dposg"] and "--metrics proxy" in missing["dposg"]
    assert "no quality recorded" in missing["dqgan"] and "hpcgan eval" in missing["dqgan"]
    text = "\n".join(quality_section(table))
    assert "### h5:cifar10.h5: proxy_fid (lower is better)" in text and "(1 seed: no spread)" in text
    assert "- dqgan_none_2_0.h5: no quality recorded" in text
    assert any("over 3 seeds" in line for line in over_seeds(table))

    chosen = quality_table(runs, "proxy_class_consistency")  # mog8 has no such metric: its headline stays
    assert {(r.dataset, r.metric) for r in chosen.rows} == {(img, "proxy_class_consistency"), ("mog8", "modes_covered")}
    assert sorted(r.path.name for r, _ in chosen.missing) == sorted(
        ["sync_none_2_0.h5", "sync_none_2_1.h5", "sync_none_2_2.h5", "dposg_none_2_0.h5", "dqgan_none_2_0.h5"]), \
        "sync's final evaluation (preferred) has only proxy_fid"
    with pytest.raises(UsageError, match="unknown metric 'kid'; valid: .*proxy_fid"):
        quality_table(runs, "kid")


def test_metric_names_and_headline():
    assert base_name("proxy_fid_rank0") == "proxy_fid" and base_name("is_std") == "is_std"
    assert base_name("nonsense_x") == "nonsense_x"
    assert headline({"proxy_class_consistency", "proxy_fid", "proxy_is"}) == "proxy_fid"
    assert headline({"fid", "proxy_fid"}) == "fid" and headline({"mode_kl", "hq_fraction"}) == "hq_fraction"
    assert headline(set()) is None


def test_suspect_scaling_numbers_are_flagged():
    quiet = [fake_run("sync", "weak", n, s, 1.0 if n == 1 else 1.1, 8) for n in (1, 2) for s in (0, 1, 2)]
    rows = {r.ranks: r for r in scaling_rows(quiet)}
    assert rows[2].flags == [] and rows[2].efficiency.mean == pytest.approx(1 / 1.1)
    assert rows[2].setup() == "1 thread/rank, cpu"

    superlinear = [fake_run("sync", "weak", 1, 0, 2.0, 8, threads=2), fake_run("sync", "weak", 2, 0, 1.0, 8)]
    flags = " ".join(scaling_rows(superlinear)[1].flags)
    assert "efficiency 2.00 > 1.05: suspect" in flags
    assert "unfair baseline: the 1-rank runs used 2 threads/rank, cpu, these 1 thread/rank, cpu" in flags

    noisy = [fake_run("sync", "weak", 1, 0, 1.0, 8), fake_run("sync", "weak", 2, 0, 1.0, 8),
             fake_run("sync", "weak", 2, 1, 4.0, 8)]
    noisy[1].steps["wall"][2::2, -1] = 3.0  # every other timed step 3x slower
    row = scaling_rows(noisy)[1]
    assert row.step_cv() > 0.2 and row.repeat_cv() > 0.2
    assert any("within a run" in f for f in row.flags) and any("between repeats" in f for f in row.flags)


def test_cost_model_score_leaves_out_the_exact_one_rank_rows(tmp_path):
    runs = [fake_run("sync", "weak", n, 0, 0.01, 8) for n in (1, 2)]
    for r in runs:
        r.config["algo"] = {"algo": "sync"}
    write_comm_file(tmp_path / "comm_n2.hdf5", 2, 1e-6, 1e9)
    lines, errors = costmodel_section(scaling_rows(runs), [tmp_path / "comm_n2.hdf5"], _net())
    assert len(errors) == 1
    assert any(line.startswith("1 of 1 predictions within 15%") for line in lines), lines


def _net():
    from hpcgan.netmodel import NetworkModel

    return NetworkModel(2e-6, 25e9, "chosen")


def test_progress_lines_come_by_time(caplog):
    now = [0.0]
    p = Progress("evaluating", 100, "samples", every=30, clock=lambda: now[0])
    with caplog.at_level("INFO", logger="hpcgan"):
        for t, done in ((10, 20), (31, 40), (40, 60), (62, 80)):
            now[0] = t
            p.update(done)
        p.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == ["evaluating: 40/100 samples (40%), 1.29 samples/s, 46 s left",
                         "evaluating: 80/100 samples (80%), 1.29 samples/s, 16 s left"]
    assert lines[2] == "evaluating: 80 samples in 62 s" and len(lines) == 3
    quick = Progress("x", 10, "items", every=30, clock=lambda: 0.0)
    quick.update(10)
    quick.close()
    assert len(caplog.records) == 3, "quick work prints nothing"


def test_cli_dead_ends_give_one_line_or_the_list(capsys):
    assert main(["summary", "/nonexistent"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hpcgan: error: no readable results files under /nonexistent")
    assert err[0].endswith("/nonexistent: no such file or folder")
    assert main(["bench"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in ("comm", "data", "recorder", "sharing"))
