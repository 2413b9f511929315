"""Claims are judged by their confidence intervals alone."""
import math

import pytest

from hpcgan.analysis.scaling import Estimate
from hpcgan.claims import WorkloadCheck, claims, dense_sync, verdict


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


def test_every_paper_has_claims_and_quick_keeps_one_each():
    full, quick = claims(quick=False), claims(quick=True)
    papers = {"DQGAN", "DPOSG", "Parallel W-CGAN"}
    assert {c.paper for c in full} == papers | {"hpcgan"} and len(full) >= 10  # hpcgan: its own defaults
    assert sorted(c.paper for c in quick) == sorted(papers)
    for c in full:
        assert len({a.name for a in c.arms}) == len(c.arms) >= 2 and math.isfinite(c.threshold)


@pytest.mark.parametrize("modes, reliable", [
    ([8, 8, 7, 8, 5], True),     # 4 of 5 seeds at >= 7 modes
    ([8, 6, 7, 8, 5], False),    # 3 of 5
    ([8, 8, 8, 8, 8], True),
])
def test_the_workload_is_reliable_when_dense_sync_covers_7_modes_on_4_of_5_seeds(modes, reliable):
    check = WorkloadCheck(dense_sync(quick=False), [float(m) for m in modes], "cmd")
    assert check.reliable is reliable
    assert ("**reliable**" in "\n".join(check.lines())) is reliable
