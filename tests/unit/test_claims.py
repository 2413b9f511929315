"""Claims are judged by their confidence intervals alone."""
import math
import re
from pathlib import Path

import numpy as np
import pytest

import hpcgan.claims as claims_module
from hpcgan.analysis.scaling import Estimate
from hpcgan.claims import (TUNING_SEED, WCGAN_RANKS, Arm, Claim, Outcome, Tuning, WorkloadCheck, arm_lines, budget,
                           claims, dense_sync, got_a_core, select, tune, verdict)
from hpcgan.errors import UsageError
from hpcgan.results.reader import RunResult


@pytest.mark.parametrize("effects, threshold, want", [
    ([0.30, 0.32, 0.31], 0.0, "holds"),                 # CI well above the threshold
    ([-0.30, -0.32, -0.31], 0.0, "does not hold"),      # CI well below
    ([-0.5, 0.5, 0.1], 0.0, "inconclusive"),            # CI straddles it
    ([0.02, 0.03, 0.025], -0.10, "holds"),              # within a margin of -0.10
    ([0.5], 0.0, "inconclusive"),                       # one seed: no interval
])
def test_verdict_follows_the_interval(effects, threshold, want):
    assert verdict(Estimate.of(effects), threshold) == want


def test_an_unmet_side_condition_never_lets_a_claim_hold():
    est = Estimate.of([0.3, 0.31, 0.32])
    assert verdict(est, 0.0, conditions_met=False) == "inconclusive"
    assert verdict(Estimate.of([-0.3, -0.31, -0.32]), 0.0, conditions_met=False) == "does not hold"


def test_every_paper_has_claims_and_quick_keeps_few():
    full, quick = claims(quick=False), claims(quick=True)
    papers = {"DQGAN", "DPOSG", "Parallel W-CGAN"}
    assert {c.paper for c in full} == papers | {"hpcgan"} and len(full) >= 10  # hpcgan: its own defaults
    assert {c.paper for c in quick} == papers and len(quick) <= 4
    for c in full:
        assert len({a.name for a in c.arms}) == len(c.arms) >= 2 and math.isfinite(c.threshold)


def flag(arm, name):
    return arm.flags[arm.flags.index(name) + 1] if name in arm.flags else None


@pytest.mark.parametrize("quick", [False, True])
def test_wcgan_arms_compare_at_equal_rank_seconds_with_equal_tuning(quick):
    wcgan = [c for c in claims(quick) if c.paper == "Parallel W-CGAN"]
    for c in wcgan:
        quality = [a for a in c.arms if not a.timing]
        if not quality:  # weak scaling: timing arms, never tuned, labels per rank constant
            one, two = c.arms
            assert one.tuning is None and int(flag(two, "--labels")) == 2 * int(flag(one, "--labels"))
            continue
        assert len(quality) == len(c.arms) == 2 and "--lr" not in quality[0].flags
        assert len({(a.ranks, float(flag(a, "--budget")) * a.ranks, a.tuning) for a in quality}) == 1, c.sentence
        assert len(quality[0].tuning.grid) >= 2 and quality[0].ranks == WCGAN_RANKS
        assert f"{float(flag(quality[0], '--budget')) * quality[0].ranks:g} rank-seconds" in c.sentence
    sentences = " | ".join(c.sentence for c in wcgan)
    datasets = ("mog8:0.1",) if quick else ("mog8:0.1", "digits")
    for data in datasets:
        assert f"on {data}" in sentences
        assert sum(f"on {data}" in c.sentence and re.search(r"[ (]cwgan", c.sentence) is not None
                   for c in wcgan) == 2, "(a) and (c)"
    if not quick:
        assert sum("BCE" in c.sentence for c in wcgan) == 2 and sum("weak-scaling" in c.sentence for c in wcgan) == 4
        walls = [c for c in wcgan if "wall time" in c.sentence]
        assert all("got a core" in name for c in walls for name, _ in c.conditions), "wall efficiency is flagged"
    assert budget(30, 2) == ("--budget", "15")


def test_only_selects_papers_and_refuses_unknown_names():
    every = claims(quick=False)
    assert {c.paper for c in select(every, "parallel w-cgan, DPOSG")} == {"Parallel W-CGAN", "DPOSG"}
    assert select(every, None) == every
    with pytest.raises(UsageError, match=r"^--only 'W-CGAN': no such paper \(w-cgan\); choose from DQGAN, hpcgan"):
        select(every, "W-CGAN")


def fake_run(metric: str, value: float, steps: int = 4, cpu_share: float = 1.0) -> RunResult:
    wall = np.full((steps, 1), 0.1)
    cols = {"step": np.arange(steps)[:, None], "wall": wall, "cpu": cpu_share * wall,
            "elapsed": np.cumsum(wall, axis=0), "g_updates": np.ones((steps, 1), np.int64),
            "d_updates": np.full((steps, 1), 5), "bytes_sent": np.zeros((steps, 1), np.int64)}
    return RunResult(Path("x.h5"), {"world_size": 1}, {}, cols, {"step": np.array([steps]), metric: np.array([value])},
                     {})


def test_tuning_keeps_the_best_learning_rate_of_the_grid_on_its_own_seed(monkeypatch):
    scores = {"0.001": 0.2, "0.003": 0.5, "0.0003": float("nan")}
    seen = []

    def run_arm(arm, seeds, *args):
        seen.append((flag(arm, "--lr"), seeds))
        return [fake_run("hq_fraction", scores[flag(arm, "--lr")])], "cmd"
    monkeypatch.setattr(claims_module, "run_arm", run_arm)
    arm = Arm("pc", 2, ("--algo", "pcwgan"), Tuning((3e-4, 1e-3, 3e-3), "hq_fraction", True))
    assert tune(arm, Path("out")).lr == 3e-3 and all(s == [TUNING_SEED] for _, s in seen)
    assert TUNING_SEED not in range(10), "never a verdict seed"
    lower = Arm("pc", 2, ("--algo", "pcwgan"), Tuning((3e-4, 1e-3, 3e-3), "hq_fraction", False))
    assert tune(lower, Path("out")).lr == 1e-3, "lower is better; NaN ranks last"
    scores.update({"0.001": 0.5})
    assert tune(arm, Path("out")).lr == 1e-3, "ties: the first in grid order"


def test_arm_lines_print_updates_and_no_quality_for_timing_arms():
    quality, timing = Arm("q", 1, (), None), Arm("t", 1, (), None, timing=True)
    runs = {"q": [fake_run("hq_fraction", 0.25)] * 2, "t": [fake_run("hq_fraction", 0.75)] * 2}
    claim = Claim("P", "s", "e", (quality, timing), lambda res, s: 0.0, 0.0)
    outcome = Outcome(claim, [0.0, 0.0], Estimate.of([0.0, 0.0]), {}, "inconclusive", 0.0, [], runs)
    lines = "\n".join(arm_lines([outcome]))
    assert "0.25" in lines and "0.75" not in lines, "a timing arm's quality is not printed"
    assert lines.count("G 4 D 20") == 4, "updates per model, every seed"


def test_the_wall_time_efficiency_is_flagged_when_a_rank_waited_for_a_core():
    name, check = got_a_core("two")
    assert check({"two": [fake_run("x", 0, cpu_share=0.98)]}, 0)
    assert not check({"two": [fake_run("x", 0, cpu_share=0.6)]}, 0), "CPU 60% of wall: it waited for a core"


@pytest.mark.parametrize("modes, reliable", [
    ([8, 8, 7, 8, 5], True),     # 4 of 5 seeds at >= 7 modes
    ([8, 6, 7, 8, 5], False),    # 3 of 5
    ([8, 8, 8, 8, 8], True),
])
def test_the_workload_is_reliable_when_dense_sync_covers_7_modes_on_4_of_5_seeds(modes, reliable):
    check = WorkloadCheck(dense_sync(quick=False), [float(m) for m in modes], "cmd")
    assert check.reliable is reliable
    assert ("**reliable**" in "\n".join(check.lines())) is reliable
