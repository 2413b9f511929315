"""``hpcgan claims``: the three papers' claims, each measured over seeds and judged by its 95% CI.

A claim compares arms (train configurations) run with the same seeds. For every seed s it derives
one number, the *effect* e_s (e.g. the quality of 1-bit DQGAN minus that of dense sync, signed so
that larger is better for the claim; or a weak-scaling efficiency), and states a threshold c. With
the Student-t 95% confidence interval [lo, hi] of the mean effect over the seeds:

    holds           lo > c       the claim is supported at 95%
    does not hold   hi < c       the opposite is supported at 95%
    inconclusive    otherwise    (also: fewer than 2 seeds, or a side condition unmet by some seed)

Side conditions are deterministic facts checked on every seed (e.g. "at <= 1/30 of the bytes").
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
ARM_METRICS = ("modes_covered", "hq_fraction", "proxy_fid")


@dataclass(frozen=True)
class Arm:
    """One configuration of a claim: ``ranks`` processes running ``train`` with ``flags``."""

    name: str
    ranks: int
    flags: tuple[str, ...]


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
    # Parallel W-CGAN
    pc = ("--algo", "pcwgan", "--data", "mog8", "--batch-size", "64", "--width", "64", "--steps",
          "60" if quick else "400", "--eval-samples", "800")
    one, two = Arm("pcwgan 1r, 2 labels", 1, (*pc, "--labels", "2")), Arm("pcwgan 2r, 4 labels", 2, (*pc, "--labels", "4"))
    out.append(Claim("Parallel W-CGAN", "weak-scaling efficiency at 2 ranks (labels per rank constant) is at "
                     "least 0.95", "T(1 rank) / T(2 ranks) per seed; threshold 0.95", (one, two),
                     ratio(one.name, two.name, RunResult.step_time), 0.95, quick=True))
    if not quick:
        budget = ("--algo", "pcwgan", *DIGITS, "--budget", "40", "--n-critic", "5", "--lr", "1e-4")
        gp, bce = Arm("pcwgan wgan-gp", 2, (*budget, "--loss", "wgan-gp")), Arm("pcwgan bce", 2, (*budget, "--loss", "ns"))
        out.append(Claim("Parallel W-CGAN", "under one 40 s wall-clock budget on digits, the per-label WGAN-GP "
                         "ensemble has a lower proxy FID than the per-label BCE (DC-CGAN) ensemble",
                         "proxy_fid(bce) - proxy_fid(wgan-gp); threshold 0", (bce, gp),
                         difference(gp.name, bce.name, final("proxy_fid"), higher_is_better=False), 0.0))
    return out


# -- running --------------------------------------------------------------------------------------
def run_claims(selected: list[Claim], seeds: list[int], out: Path, launcher: str = DEFAULT_LAUNCHER,
               timeout: float = 900) -> list[Outcome]:
    """Run every arm of every claim for every seed (reusing finished runs), then judge each claim."""
    log = get_logger()
    outcomes = []
    for claim in selected:
        t0 = time.perf_counter()
        results: Results = {}
        commands = []
        for arm in claim.arms:
            results[arm.name], command = run_arm(arm, seeds, out, launcher, timeout)
            commands.append(f"{arm.name}: {command}")
        effects = [claim.effect(results, i) for i in range(len(seeds))]
        conditions = {name: all(check(results, i) for i in range(len(seeds))) for name, check in claim.conditions}
        estimate = Estimate.of(effects)
        outcome = Outcome(claim, effects, estimate, conditions,
                          verdict(estimate, claim.threshold, all(conditions.values())),
                          time.perf_counter() - t0, commands, results)
        log.info("claim %s -> %s (effect %s, threshold %g, %.0f s)", claim.key, outcome.verdict,
                 estimate.fmt(digits=3), claim.threshold, outcome.seconds)
        outcomes.append(outcome)
    return outcomes


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
    are differences of."""
    arms: Results = {}
    for o in outcomes:
        arms.update(o.runs)
    metrics = [m for m in ARM_METRICS if any(math.isfinite(final(m)(r)) for runs in arms.values() for r in runs)]
    out = ["## Arms", "", "Final quality per arm over its seeds: mean ± standard deviation (per seed in brackets); "
           "bytes per step (all ranks) and step time (slowest rank's median).", "",
           "| arm | " + " | ".join(metrics) + " | bytes/step | step time [ms] |",
           "|---|" + "---|" * (len(metrics) + 2)]
    for name, runs in arms.items():
        cells = []
        for m in metrics:
            v = np.array([final(m)(r) for r in runs])
            cells.append("-" if not np.isfinite(v).any() else
                         f"{np.nanmean(v):.3g} ± {np.nanstd(v, ddof=1) if len(v) > 1 else math.nan:.2g} "
                         f"[{', '.join(f'{x:.3g}' for x in v)}]")
        out.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean([r.bytes_per_step() for r in runs]):.4g} | "
                   f"{1e3 * np.median([r.step_time() for r in runs]):.3g} |")
    return out + [""]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


# -- writing --------------------------------------------------------------------------------------
def write_claims(outcomes: list[Outcome], seeds: list[int], out: Path, machine: str, quick: bool,
                 wall: float, workload: WorkloadCheck | None = None) -> Path:
    """claims.md and claims.png under ``out``; returns the markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    md = ["# hpcgan claims" + (" (--quick: one claim per paper, fewer steps)" if quick else ""), "",
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
    md += ["", *arm_lines(outcomes), *(workload.lines() if workload else []), "## Per claim", ""]
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


def main(quick: bool, seeds: int, out: Path, launcher: str) -> int:
    from .info import machine
    import torch

    if seeds < 2:
        raise UsageError("--seeds must be >= 2: a verdict needs a confidence interval")
    t0 = time.perf_counter()
    ensure_proxy("digits", quick)
    outcomes = run_claims(claims(quick), list(range(seeds)), out, launcher)
    workload = None if quick else check_workload(out, launcher)
    path = write_claims(outcomes, list(range(seeds)), out, machine(torch.device("cpu")), quick,
                        time.perf_counter() - t0, workload)
    print(path.read_text())
    print(f"hpcgan claims: wrote {path}", file=sys.stderr)
    return 0


def ensure_proxy(data: str, quick: bool) -> None:
    """The digits claims measure proxy FID: train the proxy classifier once if none exists."""
    if quick:
        return
    from .data import build_dataset
    from .metrics.proxy import default_path, save_proxy, train_proxy

    dataset = build_dataset(data)
    if not default_path(dataset).exists():
        get_logger().info("training the %s proxy classifier (once)", data)
        net, acc = train_proxy(dataset, epochs=10)
        save_proxy(net, dataset, acc, default_path(dataset))
