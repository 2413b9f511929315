"""``hpcgan claims``: the three papers' claims, each measured over seeds and judged by its 95% CI.

A claim compares arms (train configurations) run with the same seeds. For every seed s it derives
one number, the *effect* e_s (e.g. the quality of 1-bit DQGAN minus that of dense sync, signed so
that larger is better for the claim; or a weak-scaling efficiency), and states a threshold c. With
the Student-t 95% confidence interval [lo, hi] of the mean effect over the seeds:

    holds           lo > c       the claim is supported at 95%
    does not hold   hi < c       the opposite is supported at 95%
    inconclusive    otherwise    (also: fewer than 2 seeds, or a side condition unmet by some seed)

Side conditions are deterministic facts checked on every seed (e.g. "at <= 1/30 of the bytes").
Arms compared at equal compute get equal tuning: a :class:`Tuning` arm runs every ``--lr`` of one
grid on TUNING_SEED (no verdict uses it) and its verdict seeds run at the best value; a timing arm
(``Arm.timing``) never has its quality printed. ``--only PAPERS`` runs the claims of those papers.
Nothing is decided by hand: :func:`verdict` is the only place a verdict comes from, and the
margins are stated in each claim's sentence. The driver is a plain single process that launches
each arm with ``mpiexec`` (``--launcher``), like ``hpcgan sweep``; finished runs are reused, so an
interrupted ``hpcgan claims`` resumes. Output: ``<out>/claims.md`` (one row per claim: the claim,
the measured effect with its CI, the verdict; then each arm's own figures over its seeds, the
workload check -- dense sync on WORKLOAD_SEEDS seeds --, and per claim its seeds, commands and the
machine), ``<out>/claims.json`` and ``<out>/claims.png`` (every seed's effect and the CI per claim).
"""
from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .analysis.scaling import Estimate
from .errors import UsageError
from .log import get_logger
from .results.reader import RunResult, load_run, slowest_median
from .sweep import DEFAULT_LAUNCHER, is_done, launch_argv, run_logged

#: mog8 settings under which quality is a reliable signal (docs/CLAIMS.md)
MOG = ("--data", "mog8:0.1", "--z-dim", "2", "--batch-size", "128", "--beta1", "0.0", "--beta2", "0.9",
       "--eval-samples", "2500")
DIGITS = ("--data", "digits", "--model", "dcgan32", "--width", "16", "--z-dim", "32", "--batch-size", "32",
          "--eval-samples", "1000")
#: a baseline below this hq_fraction has not learned the workload: "within a margin of it" is moot
LEARNED = 0.3
#: the workload is a reliable quality signal if dense sync covers >= RELIABLE_MODES of 8 modes on at
#: least RELIABLE_SEEDS of WORKLOAD_SEEDS seeds (checked by every full run, section "Workload")
WORKLOAD_SEEDS, RELIABLE_SEEDS, RELIABLE_MODES = 5, 4, 7
#: per-arm figures of the "Arms" section, when the runs have them
ARM_METRICS = ("modes_covered", "hq_fraction", "labels_covered", "proxy_fid", "proxy_labels_covered")
#: the seed learning rates are chosen on: never one of the verdict seeds 0..S-1
TUNING_SEED = 100
#: a weak-scaling rank "got a core" when its median CPU time per step is at least this share of its
#: median wall time (pcwgan's steps never wait for another rank: less means it waited for a core)
GOT_A_CORE = 0.9


@dataclass(frozen=True)
class Tuning:
    """An equal tuning budget: the arm's ``--lr`` is the best value of ``grid`` by ``metric`` on
    TUNING_SEED, a seed no verdict uses (ties: the first in grid order; NaN scores last)."""

    grid: tuple[float, ...]
    metric: str
    higher_is_better: bool


@dataclass(frozen=True)
class Arm:
    """One configuration of a claim: ``ranks`` processes running ``train`` with ``flags`` (and,
    with ``tuning``, the ``--lr`` it chooses). ``timing``: the arm measures time only, its quality
    is never printed."""

    name: str
    ranks: int
    flags: tuple[str, ...]
    tuning: Tuning | None = None
    timing: bool = False


Results = dict[str, list[RunResult]]     # arm name -> one run per seed, in seed order
Effect = Callable[[Results, int], float]  # (results, seed index) -> e_s


@dataclass(frozen=True)
class Claim:
    paper: str
    sentence: str        # the claim, with its margin, in one sentence
    effect_doc: str      # what e_s is
    arms: tuple[Arm, ...]
    effect: Effect
    threshold: float
    conditions: tuple[tuple[str, Callable[[Results, int], bool]], ...] = ()
    quick: bool = False

    @property
    def key(self) -> str:
        return f"{self.paper}: {self.sentence}"


@dataclass
class Outcome:
    claim: Claim
    effects: list[float]
    estimate: Estimate
    conditions: dict[str, bool]
    verdict: str
    seconds: float
    commands: list[str] = field(default_factory=list)
    runs: Results = field(default_factory=dict)
    tuned: dict[str, "Tuned"] = field(default_factory=dict)


@dataclass(frozen=True)
class Tuned:
    """The learning rate an arm chose and every grid value's score on TUNING_SEED."""

    lr: float
    scores: dict[float, float]
    metric: str


def verdict(estimate: Estimate, threshold: float, conditions_met: bool = True) -> str:
    """holds / does not hold / inconclusive, from the 95% CI of the mean effect (see the module doc)."""
    if estimate.n < 2 or not math.isfinite(estimate.half_width):
        return "inconclusive"
    lo, hi = estimate.mean - estimate.half_width, estimate.mean + estimate.half_width
    if hi < threshold:
        return "does not hold"
    if lo > threshold and conditions_met:
        return "holds"
    return "inconclusive"


# -- effects -------------------------------------------------------------------------------------
def final(metric: str) -> Callable[[RunResult], float]:
    return lambda run: float(run.quality().values.get(metric, math.nan))


def emulated_step_time(run: RunResult) -> float:
    """Step time on the emulated network: wall - measured t_comm + t_net_emulated (slowest rank's median)."""
    return slowest_median(run.timed("wall") - run.timed("t_comm") + run.timed("t_net_emulated"))


def consensus(run: RunResult) -> float:
    """Steady-state consensus distance: the mean of the samples in the second half of the run (one
    sample, the last, swings by 2x between neighbouring samples)."""
    series = run.series.get("consensus", {})
    if "distance" not in series:
        return math.nan
    distance, step = np.asarray(series["distance"], dtype=float), np.asarray(series["step"])
    return float(distance[step >= step.max() / 2].mean())


def difference(treat: str, base: str, of: Callable[[RunResult], float], higher_is_better: bool = True) -> Effect:
    """e_s = of(treat) - of(base), negated when lower is better (so e > 0 favours ``treat``)."""
    sign = 1.0 if higher_is_better else -1.0
    return lambda res, s: sign * (of(res[treat][s]) - of(res[base][s]))


def ratio(num: str, den: str, of: Callable[[RunResult], float]) -> Effect:
    return lambda res, s: of(res[num][s]) / of(res[den][s])


def learned(arm: str, metric: str, level: float) -> tuple[str, Callable[[Results, int], bool]]:
    """A "within a margin of the baseline" claim means nothing if the baseline learned nothing."""
    return (f"{arm} reaches {metric} >= {level:g}", lambda res, s: final(metric)(res[arm][s]) >= level)


def bytes_at_most(arm: str, base: str, fraction: float) -> tuple[str, Callable[[Results, int], bool]]:
    return (f"{arm} sends <= 1/{1 / fraction:.0f} of {base}'s bytes",
            lambda res, s: res[arm][s].bytes_per_step() <= fraction * res[base][s].bytes_per_step())


# -- the claims ------------------------------------------------------------------------------------
OADAM = ("--optimizer", "oadam", "--lr", "5e-4")


def mog_steps(quick: bool) -> tuple[str, ...]:
    return (*MOG, "--steps", "400" if quick else "3000")


def dense_sync(quick: bool) -> Arm:
    """Dense synchronous optimistic Adam on mog8 at 2 ranks: the quality reference of DQGAN's claims
    and of the workload check."""
    return Arm("sync oadam", 2, ("--algo", "sync", *mog_steps(quick), *OADAM))


def claims(quick: bool) -> list[Claim]:
    """Every claim; ``quick`` keeps one per paper with fewer steps (the seeds are given separately)."""
    mog, oadam = mog_steps(quick), OADAM
    omd = ("--optimizer", "omd", "--lr", "0.01")
    dense_q = dense_sync(quick)
    sign_q = Arm("dqgan oadam sign+EF", 2, ("--algo", "dqgan", "--compressor", "sign", *mog, *oadam))
    hq = final("hq_fraction")
    out = [Claim("DQGAN", "quality mode: 1-bit + EF is within 0.10 hq_fraction of dense sync (optimistic Adam, "
                 "mog8, 2 ranks) at <= 1/30 of the bytes",
                 "hq_fraction(1-bit + EF) - hq_fraction(dense); threshold -0.10", (dense_q, sign_q),
                 difference(sign_q.name, dense_q.name, hq), -0.10,
                 (bytes_at_most(sign_q.name, dense_q.name, 1 / 30), learned(dense_q.name, "hq_fraction", LEARNED)),
                 quick=True)]
    if not quick:
        dense_t = Arm("sync omd", 2, ("--algo", "sync", *mog, *omd))
        sign_t = Arm("dqgan omd sign+EF", 2, ("--algo", "dqgan", "--compressor", "sign", *mog, *omd))
        noef = Arm("dqgan oadam sign no-EF", 2, ("--algo", "dqgan", "--compressor", "sign", "--no-error-feedback",
                                                  *mog, *oadam))
        topk = Arm("dqgan oadam topk1%+EF", 2, ("--algo", "dqgan", "--compressor", "topk", "--ratio", "0.01",
                                                *mog, *oadam))
        per_net = Arm("dqgan oadam sign+EF per network", 2, ("--algo", "dqgan", "--compressor", "sign",
                                                              "--granularity", "network", *mog, *oadam))
        dig = (*DIGITS, "--steps", "400", "--optimizer", "oadam", "--lr", "2e-4", "--beta1", "0.5", "--beta2", "0.9")
        dense_d = Arm("sync digits", 2, ("--algo", "sync", *dig))
        sign_d = Arm("dqgan digits sign+EF", 2, ("--algo", "dqgan", "--compressor", "sign", *dig))
        out += [
            Claim("DQGAN", "theory mode: 1-bit + EF is within 0.10 hq_fraction of dense OMD (plain optimistic "
                  "gradient, mog8, 2 ranks) at <= 1/30 of the bytes",
                  "hq_fraction(1-bit + EF, OMD) - hq_fraction(dense OMD); threshold -0.10", (dense_t, sign_t),
                  difference(sign_t.name, dense_t.name, hq), -0.10,
                  (bytes_at_most(sign_t.name, dense_t.name, 1 / 30), learned(dense_t.name, "hq_fraction", LEARNED))),
            Claim("DQGAN", "without error feedback 1-bit is worse than with it (quality mode, mog8)",
                  "hq_fraction(1-bit + EF) - hq_fraction(1-bit, no EF); threshold 0", (sign_q, noef),
                  difference(sign_q.name, noef.name, hq), 0.0),
            Claim("DQGAN", "top-k 1% + EF is within 0.10 hq_fraction of dense sync (quality mode, mog8) at <= 1/30 "
                  "of the bytes", "hq_fraction(top-k + EF) - hq_fraction(dense); threshold -0.10", (dense_q, topk),
                  difference(topk.name, dense_q.name, hq), -0.10,
                  (bytes_at_most(topk.name, dense_q.name, 1 / 30), learned(dense_q.name, "hq_fraction", LEARNED))),
            Claim("hpcgan", "the default granularity, one 1-bit scale per parameter tensor, is within 0.10 "
                  "hq_fraction of one scale per network (quality mode + EF, mog8)",
                  "hq_fraction(per tensor) - hq_fraction(per network); threshold -0.10", (sign_q, per_net),
                  difference(sign_q.name, per_net.name, hq), -0.10),
            Claim("DQGAN", "on digits (dcgan32), 1-bit + EF is within 10% of dense sync's proxy FID",
                  "(proxy_fid(dense) - proxy_fid(1-bit + EF)) / proxy_fid(dense); threshold -0.10",
                  (dense_d, sign_d),
                  lambda res, s: 1 - final("proxy_fid")(res[sign_d.name][s]) / final("proxy_fid")(res[dense_d.name][s]),
                  -0.10),
        ]
    # DPOSG: 4 ranks, emulated 5 ms latency per message (accounting only: it does not change training)
    ranks = 2 if quick else 4
    net = ("--net-latency", "0.005", "--consensus-every", "50") if not quick else ("--net-latency", "0.005",)
    central = Arm(f"sync oadam {ranks}r", ranks, ("--algo", "sync", *mog, *oadam, "--net-latency", "0.005"))
    ring = Arm(f"dposg ring {ranks}r", ranks, ("--algo", "dposg", "--topology", "ring", *mog, *oadam, *net))
    out.append(Claim("DPOSG", f"under 5 ms emulated latency, a DPOSG ring step is faster than a centralized "
                     f"(allreduce) step ({ranks} ranks)",
                     "emulated step time(sync) - emulated step time(dposg) [s]; threshold 0", (central, ring),
                     difference(ring.name, central.name, emulated_step_time, higher_is_better=False), 0.0,
                     quick=True))
    if not quick:
        ring3 = Arm("dposg ring 4r, 3 rounds", 4, ("--algo", "dposg", "--topology", "ring", "--gossip-rounds", "3",
                                                    *mog, *oadam, *net))
        out += [
            Claim("DPOSG", "the ring's averaged model is within 0.10 hq_fraction of centralized training with the "
                  "same optimizer (optimistic Adam, 4 ranks)", "hq_fraction(dposg avg) - hq_fraction(sync); "
                  "threshold -0.10", (central, ring), difference(ring.name, central.name, hq), -0.10,
                  (learned(central.name, "hq_fraction", LEARNED),)),
            Claim("DPOSG", "3 gossip rounds per step bring the ranks closer to their average than 1 round",
                  "mean consensus distance over the second half of the run, 1 round - 3 rounds; threshold 0",
                  (ring, ring3),
                  difference(ring3.name, ring.name, consensus, higher_is_better=False), 0.0),
        ]
    return out + wcgan_claims(quick)


# -- Parallel W-CGAN: equal rank-seconds, equal tuning budgets ------------------------------------
@dataclass(frozen=True)
class WcganData:
    """One dataset of the Parallel W-CGAN claims."""

    flags: tuple[str, ...]
    labels: int               # C: pcwgan trains C generators
    rank_seconds: float       # of every quality arm
    quick_rank_seconds: float  # 0: not in --quick
    eval_every: int
    metric: str               # quality of (a), (b) and the tuning
    higher_is_better: bool
    covered: str              # per-label coverage of (c)
    weak_labels: int          # weak scaling: labels at 1 rank (twice as many at 2)
    weak_steps: int


WCGAN_DATA = {
    "mog8:0.1": WcganData(("--data", "mog8:0.1", "--z-dim", "2", "--batch-size", "64", "--eval-samples", "2000"),
                          8, 30, 12, 50, "hq_fraction", True, "labels_covered", 4, 200),
    "digits": WcganData(("--data", "digits", "--model", "dcgan32", "--width", "16", "--z-dim", "32", "--batch-size",
                         "32", "--eval-samples", "1000"), 10, 40, 0, 10, "proxy_fid", False, "proxy_labels_covered",
                        2, 24),
}
#: the learning-rate grid every W-CGAN method gets (quick: its last two values)
LR_GRID = (3e-4, 1e-3, 3e-3)
WCGAN_RANKS = 2


def budget(rank_seconds: float, ranks: int) -> tuple[str, ...]:
    """``--budget`` for ``rank_seconds`` on ``ranks`` ranks: every rank trains rank_seconds/ranks seconds."""
    return ("--budget", f"{rank_seconds / ranks:g}")


def got_a_core(arm: str) -> tuple[str, Callable[[Results, int], bool]]:
    """Side condition of a wall-time efficiency: no rank of ``arm`` waited for a core (ranks <= free cores)."""
    def check(res: Results, s: int) -> bool:
        run = res[arm][s]
        share = np.nanmedian(run.timed("cpu"), axis=0) / np.nanmedian(run.timed("wall"), axis=0)
        return bool(np.all(share >= GOT_A_CORE))
    return (f"every rank of {arm} got a core (median CPU/wall per step >= {GOT_A_CORE:g}; "
            "else the ranks exceeded the free cores)", check)


def wcgan_claims(quick: bool) -> list[Claim]:
    """The Parallel W-CGAN paper's claims at equal rank-seconds (docs/CLAIMS.md): (a) pcwgan beats one
    conditional WGAN-GP (cwgan), (b) per-label WGAN-GP beats per-label BCE (DC-CGAN), (c) less mode
    collapse: more labels covered than cwgan, (d) weak scaling from wall and from CPU time. Every
    quality arm runs WCGAN_RANKS ranks and chooses its --lr from the same grid (:class:`Tuning`).
    Quick: (a) and (c) on mog8 (the same runs), a two-value grid."""
    out = []
    for data, d in WCGAN_DATA.items():
        flags, metric, higher, covered = d.flags, d.metric, d.higher_is_better, d.covered
        rank_seconds = d.quick_rank_seconds if quick else d.rank_seconds
        if not rank_seconds:
            continue
        tuning = Tuning(LR_GRID[-2:] if quick else LR_GRID, metric, higher)
        common = (*flags, *budget(rank_seconds, WCGAN_RANKS), "--eval-every", str(d.eval_every))
        pc = Arm(f"pcwgan {data}", WCGAN_RANKS, ("--algo", "pcwgan", *common), tuning)
        cw = Arm(f"cwgan {data}", WCGAN_RANKS, ("--algo", "cwgan", *common), tuning)
        bce = Arm(f"pcwgan bce {data}", WCGAN_RANKS, ("--algo", "pcwgan", "--loss", "ns", *common), tuning)
        at = (f"at {rank_seconds:g} rank-seconds on {data} ({WCGAN_RANKS} ranks, pcwgan: {rank_seconds / d.labels:.3g} "
              "per label; each arm's --lr tuned on the same grid)")
        what = f"{metric}({{a}}) - {metric}({{b}})" if higher else f"{metric}({{b}}) - {metric}({{a}})"
        out += [
            Claim("Parallel W-CGAN", f"{at}, one WGAN-GP per label (pcwgan) has a better {metric} than one "
                  "conditional WGAN-GP (cwgan)", what.format(a="pcwgan", b="cwgan") + "; threshold 0", (pc, cw),
                  difference(pc.name, cw.name, final(metric), higher), 0.0, quick=True),
            Claim("Parallel W-CGAN", f"{at}, mode collapse: pcwgan covers more labels than cwgan ({covered}: labels "
                  "whose own samples are right at least half of the time)",
                  f"{covered}(pcwgan) - {covered}(cwgan); threshold 0", (pc, cw),
                  difference(pc.name, cw.name, final(covered)), 0.0, quick=True)]
        if quick:
            continue
        out.append(Claim("Parallel W-CGAN", f"{at}, per-label WGAN-GP has a better {metric} than per-label BCE "
                         "(DC-CGAN, --loss ns)", what.format(a="wgan-gp", b="bce") + "; threshold 0", (pc, bce),
                         difference(pc.name, bce.name, final(metric), higher), 0.0))
        pcw, k = ("--algo", "pcwgan", *flags, "--steps", str(d.weak_steps)), d.weak_labels
        one = Arm(f"pcwgan {data} 1r, {k} labels", 1, (*pcw, "--labels", str(k)), timing=True)
        two = Arm(f"pcwgan {data} 2r, {2 * k} labels", 2, (*pcw, "--labels", str(2 * k)), timing=True)
        out += [
            Claim("Parallel W-CGAN", f"weak-scaling efficiency on {data} from wall time (labels per rank constant, "
                  "1 -> 2 ranks) is at least 0.9", "step time(1 rank) / step time(2 ranks); threshold 0.9",
                  (one, two), ratio(one.name, two.name, RunResult.step_time), 0.9, (got_a_core(two.name),)),
            Claim("Parallel W-CGAN", f"weak-scaling efficiency on {data} from CPU time (labels per rank constant, "
                  "1 -> 2 ranks) is at least 0.9", "CPU time per step(1 rank) / CPU time per step(2 ranks); "
                  "threshold 0.9", (one, two), ratio(one.name, two.name, RunResult.cpu_step_time), 0.9)]
    return out


# -- running --------------------------------------------------------------------------------------
def run_claims(selected: list[Claim], seeds: list[int], out: Path, launcher: str = DEFAULT_LAUNCHER,
               timeout: float = 900) -> list[Outcome]:
    """Run every arm of every claim for every seed (reusing finished runs; a tuned arm first runs its
    grid on TUNING_SEED and keeps the best --lr), then judge each claim."""
    log = get_logger()
    outcomes, tuned = [], {}
    for claim in selected:
        t0 = time.perf_counter()
        results: Results = {}
        commands = []
        for arm in claim.arms:
            if arm.tuning is not None and arm.name not in tuned:
                tuned[arm.name] = tune(arm, out, launcher, timeout)
                log.info("claims: %s chose --lr %g (%s on seed %d: %s)", arm.name, tuned[arm.name].lr,
                         arm.tuning.metric, TUNING_SEED, tuned[arm.name].scores)
            run_as = arm if arm.tuning is None else with_lr(arm, tuned[arm.name].lr)
            results[arm.name], command = run_arm(run_as, seeds, out, launcher, timeout)
            commands.append(f"{arm.name}: {command}")
        effects = [claim.effect(results, i) for i in range(len(seeds))]
        conditions = {name: all(check(results, i) for i in range(len(seeds))) for name, check in claim.conditions}
        estimate = Estimate.of(effects)
        outcome = Outcome(claim, effects, estimate, conditions,
                          verdict(estimate, claim.threshold, all(conditions.values())),
                          time.perf_counter() - t0, commands, results,
                          {a.name: tuned[a.name] for a in claim.arms if a.name in tuned})
        log.info("claim %s -> %s (effect %s, threshold %g, %.0f s)", claim.key, outcome.verdict,
                 estimate.fmt(digits=3), claim.threshold, outcome.seconds)
        outcomes.append(outcome)
    return outcomes


def with_lr(arm: Arm, lr: float) -> Arm:
    """The arm at learning rate ``lr`` (its runs' files are named after it)."""
    return Arm(f"{arm.name} lr {lr:g}", arm.ranks, (*arm.flags, "--lr", f"{lr:g}"), None, arm.timing)


def tune(arm: Arm, out: Path, launcher: str = DEFAULT_LAUNCHER, timeout: float = 900) -> Tuned:
    """Every --lr of the arm's grid on TUNING_SEED; the best by the tuning metric (see :class:`Tuning`)."""
    t = arm.tuning
    scores = {lr: final(t.metric)(run_arm(with_lr(arm, lr), [TUNING_SEED], out, launcher, timeout)[0][0])
              for lr in t.grid}
    sign = 1.0 if t.higher_is_better else -1.0
    ranked = sorted(t.grid, key=lambda lr: (not math.isfinite(scores[lr]), -sign * scores[lr]
                                            if math.isfinite(scores[lr]) else 0.0, t.grid.index(lr)))
    return Tuned(ranked[0], scores, t.metric)


def run_arm(arm: Arm, seeds: list[int], out: Path, launcher: str = DEFAULT_LAUNCHER,
            timeout: float = 900) -> tuple[list[RunResult], str]:
    """One run of ``arm`` per seed (reusing finished ones) and its command line, with S for the seed."""
    runs, command = [], ""
    for seed in seeds:
        path = out / "runs" / f"{slug(arm.name)}_s{seed}.h5"
        argv = launch_argv(launcher, arm.ranks, ["train", *arm.flags, "--seed", str(seed), "--out", str(path),
                                                 "--force"])
        command = command or shlex.join(argv).replace(f"--seed {seed}", "--seed S").replace(f"_s{seed}.h5", "_sS.h5")
        if not is_done(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            code = run_logged(argv, path.with_suffix(".log"), timeout, threads=1)
            if code != 0:
                raise UsageError(f"claims: {arm.name} seed {seed} failed (exit {code}); see {path.with_suffix('.log')}")
        runs.append(load_run(path))
    return runs, command


@dataclass(frozen=True)
class WorkloadCheck:
    """Dense sync's modes covered on WORKLOAD_SEEDS seeds: is mog8 a reliable quality signal?"""

    arm: Arm
    modes: list[float]
    command: str

    @property
    def reliable(self) -> bool:
        return sum(m >= RELIABLE_MODES for m in self.modes) >= RELIABLE_SEEDS

    def lines(self) -> list[str]:
        good = sum(m >= RELIABLE_MODES for m in self.modes)
        return ["## Workload", "",
                f"Is quality a reliable signal on this workload? Criterion: {self.arm.name} covers >= {RELIABLE_MODES} "
                f"of 8 modes on at least {RELIABLE_SEEDS} of {len(self.modes)} seeds. Modes covered per seed: "
                + ", ".join(f"s{s}: {m:g}" for s, m in enumerate(self.modes))
                + f" -> {good} of {len(self.modes)}: **{'reliable' if self.reliable else 'NOT reliable'}**.",
                "", "```", self.command, "```", ""]


def check_workload(out: Path, launcher: str = DEFAULT_LAUNCHER) -> WorkloadCheck:
    arm = dense_sync(quick=False)
    runs, command = run_arm(arm, list(range(WORKLOAD_SEEDS)), out, launcher)
    return WorkloadCheck(arm, [final("modes_covered")(r) for r in runs], command)


def arm_lines(outcomes: list[Outcome]) -> list[str]:
    """Each arm's own figures over its seeds (mean ± sample standard deviation): what the effects
    are differences of, with the updates each model got and the rank-seconds it trained; a timing
    arm's quality is not printed."""
    arms: Results = {}
    timing = {a.name for o in outcomes for a in o.claim.arms if a.timing}
    for o in outcomes:
        arms.update(o.runs)
    metrics = [m for m in ARM_METRICS if any(math.isfinite(final(m)(r)) for name, runs in arms.items()
                                             if name not in timing for r in runs)]
    out = ["## Arms", "", "Final quality per arm over its seeds: mean ± standard deviation (per seed in brackets); "
           "updates per model (generator G and critic D updates each model got, per seed; pcwgan: each label's "
           "generator, min-max over labels); rank-seconds trained (per seed); bytes per step (all ranks) and step "
           "time (slowest rank's median). Timing arms print no quality.", "",
           "| arm | " + " | ".join(metrics) + " | updates per model | rank-seconds | bytes/step | step time [ms] |",
           "|---|" + "---|" * (len(metrics) + 4)]
    for name, runs in arms.items():
        cells = []
        for m in metrics:
            v = np.array([final(m)(r) for r in runs])
            cells.append("-" if name in timing or not np.isfinite(v).any() else
                         f"{np.nanmean(v):.3g} ± {np.nanstd(v, ddof=1) if len(v) > 1 else math.nan:.2g} "
                         f"[{', '.join(f'{x:.3g}' for x in v)}]")
        out.append(f"| {name} | " + " | ".join(cells) + f" | {'; '.join(r.updates_text() for r in runs)} | "
                   f"{', '.join(f'{r.rank_seconds():.0f}' for r in runs)} | "
                   f"{np.mean([r.bytes_per_step() for r in runs]):.4g} | "
                   f"{1e3 * np.median([r.step_time() for r in runs]):.3g} |")
    return out + [""]


def tuning_lines(outcomes: list[Outcome]) -> list[str]:
    """The learning rate each tuned arm chose, with every grid value's score on TUNING_SEED."""
    tuned = {name: t for o in outcomes for name, t in o.tuned.items()}
    if not tuned:
        return []
    out = ["## Learning rates", "", f"Each tuned arm ran every --lr of the same grid on seed {TUNING_SEED} (no "
           "verdict uses it) and kept the best by the metric named; the verdict seeds ran at the chosen value.", "",
           "| arm | metric | score per --lr on the tuning seed | chosen --lr |", "|---|---|---|---|"]
    for name, t in tuned.items():
        out.append(f"| {name} | {t.metric} | " + ", ".join(f"{lr:g}: {v:.4g}" for lr, v in t.scores.items())
                   + f" | **{t.lr:g}** |")
    return out + [""]


def curve_lines(outcomes: list[Outcome]) -> list[str]:
    """Each quality arm's learning curve on its first seed: step -> generator updates per model -> the
    claim metrics (the evaluations during training and the final one)."""
    arms: Results = {}
    for o in outcomes:
        arms.update({a.name: o.runs[a.name] for a in o.claim.arms
                     if not a.timing and len(o.runs[a.name][0].eval.get("step", [])) > 1})
    if not arms:
        return []
    out = ["## Learning curves", "", "First seed of each quality arm: at each evaluation, step (of every rank's "
           "clock) -> mean generator updates per model (pcwgan: per label) -> quality.", ""]
    for name, runs in arms.items():
        run = runs[0]
        shown = [m for m in ARM_METRICS if m in run.eval]
        points = []
        for i, step in enumerate(run.eval["step"]):
            values = ", ".join(f"{m} {run.eval[m][i]:.3g}" for m in shown)
            points.append(f"{int(step)} ({run.updates_at(int(step)):.1f} G updates): {values}")
        out.append(f"- {name}, seed {run.config.get('run', {}).get('seed', '?')}: " + "; ".join(points))
    return out + [""]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


# -- writing --------------------------------------------------------------------------------------
def write_claims(outcomes: list[Outcome], seeds: list[int], out: Path, machine: str, quick: bool,
                 wall: float, workload: WorkloadCheck | None = None) -> Path:
    """claims.md and claims.png under ``out``; returns the markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    md = ["# hpcgan claims" + (" (--quick: fewer claims, steps and rank-seconds)" if quick else ""), "",
          f"Machine: {machine}. Seeds: {', '.join(map(str, seeds))} ({len(seeds)} per arm). "
          f"This invocation took {wall / 60:.1f} min (runs finished by an earlier one are reused, not rerun). "
          "Effect: mean over seeds ± 95% Student-t CI half-width; "
          "verdict: holds if the CI lies above the threshold (and every side condition holds), does not hold "
          "if it lies below, else inconclusive (docs/ALGORITHMS.md, hpcgan/claims.py).", "",
          "| paper | claim | effect (mean ± 95% CI half-width) [CI] | threshold | side conditions | verdict |",
          "|---|---|---|---|---|---|"]
    for o in outcomes:
        cond = "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in o.conditions.items()) or "-"
        lo, hi = o.estimate.mean - o.estimate.half_width, o.estimate.mean + o.estimate.half_width
        md.append(f"| {o.claim.paper} | {o.claim.sentence} | {o.estimate.fmt(digits=3)} [{lo:.3g}, {hi:.3g}] | "
                  f"{o.claim.threshold:g} | {cond} | **{o.verdict}** |")
    md += ["", *arm_lines(outcomes), *tuning_lines(outcomes), *curve_lines(outcomes),
           *(workload.lines() if workload else []), "## Per claim", ""]
    for o in outcomes:
        md += [f"### {o.claim.key}", "", f"Effect e_s: {o.claim.effect_doc}.",
               "Per seed: " + ", ".join(f"s{s}: {e:.4g}" for s, e in zip(seeds, o.effects))
               + f" (this invocation: {o.seconds:.0f} s).",
               "", "Commands (S = seed):", "", "```", *o.commands, "```", ""]
    md += ["![claims](claims.png)", ""]
    plot_claims(outcomes, out / "claims.png", machine)
    (out / "claims.json").write_text(json.dumps({"machine": machine, "seeds": seeds, "claims": [
        {"paper": o.claim.paper, "claim": o.claim.sentence, "effects": o.effects, "mean": o.estimate.mean,
         "half_width": o.estimate.half_width, "threshold": o.claim.threshold, "conditions": o.conditions,
         "verdict": o.verdict} for o in outcomes],
        "workload": None if workload is None else {"arm": workload.arm.name, "modes_covered": workload.modes,
                                                   "reliable": workload.reliable}}, indent=1))
    path = out / "claims.md"
    path.write_text("\n".join(md))
    return path


def plot_claims(outcomes: list[Outcome], path: Path, machine: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(outcomes), 1, figsize=(8, 1.3 * len(outcomes) + 0.8), squeeze=False)
    for ax, o in zip(axes[:, 0], outcomes):
        e = np.asarray(o.effects, dtype=float)
        ax.plot(e, np.zeros_like(e), "o", alpha=0.6)
        if math.isfinite(o.estimate.half_width):
            ax.errorbar([o.estimate.mean], [0.25], xerr=[o.estimate.half_width], fmt="s", color="k", capsize=4)
        ax.axvline(o.claim.threshold, color="r", linestyle="--")
        ax.set_yticks([])
        ax.set_title(f"{o.claim.paper}: {o.verdict}", fontsize=8, loc="left")
    fig.suptitle(f"claims: per-seed effects (dots), mean ± 95% CI (square), threshold (red) — {machine}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def select(every: list[Claim], only: str | None) -> list[Claim]:
    """The claims of the papers named in ``only`` (comma-separated, any case; None or "": all);
    a name that is no paper's is a UsageError listing the papers."""
    if not only:
        return every
    papers = list(dict.fromkeys(c.paper for c in every))
    wanted = {n.strip().lower() for n in only.split(",") if n.strip()}
    unknown = sorted(wanted - {p.lower() for p in papers})
    if unknown or not wanted:
        raise UsageError(f"--only {only!r}: no such paper ({', '.join(unknown) or 'none named'}); "
                         f"choose from {', '.join(papers)}")
    return [c for c in every if c.paper.lower() in wanted]


def main(quick: bool, seeds: int, out: Path, launcher: str, only: str | None = None) -> int:
    from .info import machine
    import torch

    if seeds < 2:
        raise UsageError("--seeds must be >= 2: a verdict needs a confidence interval")
    selected = select(claims(quick), only)
    t0 = time.perf_counter()
    if any("digits" in arm.flags for c in selected for arm in c.arms):
        ensure_proxy("digits")
    outcomes = run_claims(selected, list(range(seeds)), out, launcher)
    # the workload check is about the mog8 settings of the DQGAN and DPOSG claims
    needs_workload = any(c.paper != "Parallel W-CGAN" for c in selected)
    workload = check_workload(out, launcher) if not quick and needs_workload else None
    path = write_claims(outcomes, list(range(seeds)), out, machine(torch.device("cpu")), quick,
                        time.perf_counter() - t0, workload)
    print(path.read_text())
    print(f"hpcgan claims: wrote {path}", file=sys.stderr)
    return 0


def ensure_proxy(data: str) -> None:
    """The digits claims measure proxy FID: train the proxy classifier once if none exists."""
    from .data import build_dataset
    from .metrics.proxy import default_path, save_proxy, train_proxy

    dataset = build_dataset(data)
    if not default_path(dataset).exists():
        get_logger().info("training the %s proxy classifier (once)", data)
        net, acc = train_proxy(dataset, epochs=10)
        save_proxy(net, dataset, acc, default_path(dataset))
