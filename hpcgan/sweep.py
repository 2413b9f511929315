"""``hpcgan sweep``: weak or strong scaling sweeps, one ``mpiexec``/``srun`` job per configuration.

The sweep driver is a plain single process. For every algorithm A, rank count N and repeat r it
launches ``<launcher> python -m mpi4py -m hpcgan train ...`` writing ``<out>/A_S_nN_rR.h5`` (S =
weak or strong, seed = base seed + r), with the console output next to it in ``.log``. The ``--batch-size`` given is the
batch of the 1-rank baseline, b:

* weak scaling keeps the per-rank work constant: local batch = b, global batch = N·b
  (rules in :data:`WEAK_RULES` change what "per-rank work" is for an algorithm, e.g. pcwgan keeps
  the labels per rank constant: ``--labels`` = N · labels of the 1-rank run);
* strong scaling keeps the global work constant: global batch = b, local batch = b/N (N must
  divide b).

Resumable: a file that has ``finished_at`` and validates is skipped; anything else (crashed,
killed, invalid) is rerun with ``--force``. For the cost model the sweep also runs, once per rank
count N >= 2, ``hpcgan bench comm`` (``comm_nN.hdf5``: mpi backend, dense fp32 allreduce only,
4 B to 1 MiB, :data:`COMM_BENCH_ARGS`; see :mod:`hpcgan.benchmarks.comm`) and ``hpcgan bench
sharing`` (``sharing_nN.hdf5``, :data:`SHARING_BENCH_ARGS`: how ranks that share cores slow down).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
from tqdm import tqdm

from .algorithms import ALGORITHMS
from .bench import validate
from .config import SECTIONS, RunConfig, add_config_arguments, config_from_args, config_to_argv
from .errors import UsageError
from .log import get_logger

#: ``hpcgan bench comm`` flags of the per-rank-count cost-model measurement: what
#: :func:`hpcgan.costmodel.fit_network` reads (mpi backend, dense allreduce), kept quick.
COMM_BENCH_ARGS = ["--backends", "mpi", "--compressors=", "--min-size", "4", "--max-size", "1MiB",
                   "--iters", "20", "--warmup", "2"]

#: ``hpcgan bench sharing`` flags: works spanning the step times of small models, kept quick.
SHARING_BENCH_ARGS = ["--work", "0.001,0.004,0.016", "--iters", "100"]

#: Fields the sweep sets per configuration (excluded from the pass-through train flags).
SWEEP_FIELDS = frozenset({"algo", "scaling", "out", "force", "resume"})
DEFAULT_LAUNCHER = str(Path(sys.executable).parent / "mpiexec") + " -n {n}"


@dataclass(frozen=True)
class WeakRule:
    """Weak scaling of one algorithm: config field ``section.name`` = N × its 1-rank value."""

    section: str
    name: str
    why: str


#: Algorithms whose per-rank work is not the batch (data-driven; anything else scales the batch).
WEAK_RULES: dict[str, WeakRule] = {
    "pcwgan": WeakRule("data", "labels", "one generator per label: labels per rank stay constant"),
    "cwgan": WeakRule("data", "labels", "conditional baseline of pcwgan: same label count per rank"),
}


@dataclass(frozen=True)
class Job:
    algo: str
    ranks: int
    repeat: int
    cfg: RunConfig

    @property
    def name(self) -> str:
        return f"{self.algo}_{self.cfg.run.scaling}_n{self.ranks}_r{self.repeat}"

    @property
    def path(self) -> Path:
        return Path(self.cfg.run.out)


def parse_ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"expected a comma-separated list of integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise UsageError(f"rank counts must be >= 1, got '{text}'")
    return sorted(set(values))


def parse_algo_flags(items: list[str]) -> dict[str, list[str]]:
    """``--algo-flags 'ALGO: FLAGS'`` (repeatable) -> {ALGO: [flags]}. ALGO must be a registered
    algorithm; flags of one the sweep does not run are unused (scripts can set defaults for all)."""
    out: dict[str, list[str]] = {}
    for item in items:
        algo, sep, flags = item.partition(":")
        if not sep:
            raise UsageError(f"--algo-flags takes 'ALGO: FLAGS', e.g. 'dposg: --optimizer oadam'; got '{item}'")
        ALGORITHMS.get(algo.strip())
        out.setdefault(algo.strip(), []).extend(shlex.split(flags))
    return out


def with_flags(base: RunConfig, flags: list[str]) -> RunConfig:
    """``base`` with train ``flags`` applied on top (parsed and range-checked like ``train``'s)."""
    if not flags:
        return base
    parser = argparse.ArgumentParser(prog="--algo-flags", exit_on_error=False, add_help=False)
    add_config_arguments(parser)
    try:
        ns, unknown = parser.parse_known_args(config_to_argv(base) + flags)
    except argparse.ArgumentError as e:
        raise UsageError(f"--algo-flags {shlex.join(flags)}: {e}") from None
    if unknown:
        raise UsageError(f"--algo-flags {shlex.join(flags)}: unknown train flags {shlex.join(unknown)}")
    return config_from_args(ns)


def plan(base: RunConfig, algos: list[str], ranks: list[int], scaling: str, repeats: int,
         out: Path, algo_flags: dict[str, list[str]] | None = None) -> list[Job]:
    """Every (algorithm, ranks, repeat) configuration of the sweep, in launch order. ``algo_flags``
    are extra train flags of single algorithms (e.g. dposg's ``--optimizer oadam``)."""
    if scaling not in ("weak", "strong"):
        raise UsageError(f"--scaling must be weak or strong, got '{scaling}'")
    if repeats < 1:
        raise UsageError("--repeats must be >= 1")
    jobs = []
    for algo in algos:
        ALGORITHMS.get(algo)  # unknown names fail here, before anything is launched
        mine = with_flags(base, (algo_flags or {}).get(algo, []))
        b = mine.data.batch_size
        bad = [n for n in ranks if b % n] if scaling == "strong" else []
        if bad:
            raise UsageError(f"strong scaling keeps the global batch {b}: not divisible by ranks {bad}")
        for n in ranks:
            for r in range(repeats):
                changes = {"algo": {"algo": algo},
                           "data": {"batch_size": b if scaling == "weak" else b // n},
                           "run": {"scaling": scaling, "seed": mine.run.seed + r,
                                   "out": str(out / f"{algo}_{scaling}_n{n}_r{r}.h5"), "force": True}}
                if scaling == "weak" and algo in WEAK_RULES:
                    _apply_weak_rule(mine, WEAK_RULES[algo], n, changes)
                jobs.append(Job(algo, n, r, mine.replace(**changes)))
    return jobs


def _apply_weak_rule(base: RunConfig, rule: WeakRule, n: int, changes: dict) -> None:
    fields = {f.name for f in dataclasses.fields(SECTIONS[rule.section])}
    if rule.name not in fields:
        raise UsageError(f"weak scaling of this algorithm needs the config field {rule.section}.{rule.name} "
                         f"({rule.why}); this hpcgan version does not have it")
    per_rank = getattr(getattr(base, rule.section), rule.name)
    if per_rank < 1:
        raise UsageError(f"weak scaling: give --{rule.name.replace('_', '-')} K (K per rank), {rule.why}")
    changes.setdefault(rule.section, {})[rule.name] = per_rank * n


def is_done(path: Path) -> bool:
    """A finished (``finished_at`` present) results file that validates."""
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            finished = "finished_at" in f.attrs
    except OSError:
        return False
    return finished and not validate(str(path))


def launch_argv(launcher: str, n: int, hpcgan_args: list[str]) -> list[str]:
    """``<launcher with {n}> python -m mpi4py -m hpcgan <args>``."""
    if "{n}" not in launcher:
        raise UsageError(f"--launcher must contain {{n}} for the rank count, got '{launcher}'")
    return [*shlex.split(launcher.replace("{n}", str(n))), sys.executable, "-m", "mpi4py", "-m", "hpcgan",
            *hpcgan_args]


def _run(argv: list[str], log: Path, timeout: float, threads: int) -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"HPCGAN_THREADS": str(threads)} if threads else {})}
    with open(log, "w") as f:
        f.write(shlex.join(argv) + "\n")
        f.flush()
        try:
            return subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            f.write(f"\nhpcgan sweep: killed after {timeout:.0f} s\n")
            return 124


def _tail(path: Path, lines: int = 8) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_sweep(jobs: list[Job], out: Path, launcher: str = DEFAULT_LAUNCHER, timeout: float = 3600,
              comm_bench: bool = True, dry_run: bool = False, threads: int = 0) -> int:
    """Launch every job not yet done (and ``bench comm`` per rank count); 0 if all succeed.

    ``dry_run`` prints the exact launch line of each pending job instead of running it; ``threads``
    > 0 fixes the torch threads per rank (``HPCGAN_THREADS``) so that 1-rank runs do not use more
    cores per rank than N-rank runs.
    """
    log = get_logger()
    tasks = [(j.name, j.ranks, j.path, ["train", *config_to_argv(j.cfg)]) for j in jobs]
    if comm_bench:
        for n in sorted({j.ranks for j in jobs if j.ranks > 1}):
            for bench, flags in (("comm", COMM_BENCH_ARGS), ("sharing", SHARING_BENCH_ARGS)):
                path = out / f"{bench}_n{n}.hdf5"
                tasks.append((f"{bench}_n{n}", n, path, ["bench", bench, *flags, "--out", str(path)]))
    pending = []
    for task in tasks:
        name, _, path, _ = task
        if path.exists() if path.suffix == ".hdf5" else is_done(path):
            log.info("%-22s skipped (finished: %s)", name, path)
        else:
            pending.append(task)
    if dry_run:  # the exact launch lines of what would run now
        for _, n, _, args in pending:
            print(shlex.join(launch_argv(launcher, n, args)))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    failed, t0 = [], time.perf_counter()
    bar = tqdm(pending, desc="sweep", unit="run", file=sys.stderr, disable=None)
    for name, n, path, args in bar:
        bar.set_postfix_str(name)
        ts = time.perf_counter()
        code = _run(launch_argv(launcher, n, args), path.with_suffix(".log"), timeout, threads)
        if code == 0:
            log.info("%-22s done in %.1f s -> %s", name, time.perf_counter() - ts, path)
        else:
            failed.append(name)
            log.error("%-22s FAILED (exit %d); last lines of %s:\n%s", name, code, path.with_suffix(".log"),
                      _tail(path.with_suffix(".log")))
    bar.close()
    log.info("sweep: %d run(s) launched, %d skipped, %d failed, %.1f s wall -> %s", len(pending),
             len(tasks) - len(pending), len(failed),
             time.perf_counter() - t0, out)
    return 1 if failed else 0


def write_manifest(out: Path, jobs: list[Job], scaling: str, launcher: str, threads: int) -> None:
    """sweep_<scaling>.json: what was asked for (the runs' own attrs remain the source of truth)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"scaling": scaling, "launcher": launcher, "threads_per_rank": threads or "default",
                "runs": [{"name": j.name, "algo": j.algo, "ranks": j.ranks, "repeat": j.repeat,
                          "file": j.path.name} for j in jobs]}
    (out / f"sweep_{scaling}.json").write_text(json.dumps(manifest, indent=1))
