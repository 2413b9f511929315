"""``hpcgan sweep``: weak or strong scaling sweeps, one ``mpiexec``/``srun`` job per configuration.

The sweep driver is a plain single process. For every algorithm A, rank count N and repeat r it
launches ``<launcher> python -m mpi4py -m hpcgan train ...`` writing ``<out>/A_S_nN_rR.h5`` (S =
weak or strong, seed = base seed + r), with the console output next to it in ``.log``. The ``--batch-size`` given is the
batch of the 1-rank baseline, b:

* weak scaling keeps the per-rank work constant: local batch = b, global batch = N·b
  (an algorithm's ``weak_scaling`` rule changes what "per-rank work" is for it, e.g. pcwgan keeps
  the labels per rank constant: ``--labels`` = N · labels of the 1-rank run);
* strong scaling keeps the global work constant: global batch = b, local batch = b/N (N must
  divide b).

Resumable: a file that has ``finished_at`` and validates is skipped; a run stopped with a
checkpoint (``<out>.ckpt/``: a time-limit signal, a preemption) continues with ``--resume``;
anything else (crashed, killed, invalid) is rerun with ``--force``. A run stopped by a signal
(SIGUSR1, SIGTERM: the job's time is up) ends the sweep with its status, so a job script can
requeue it (jobs/sweep_task.sbatch). For the cost model the sweep also runs, once per rank
count N >= 2, ``hpcgan bench comm`` (``comm_nN.hdf5``: mpi backend, dense fp32 allreduce only,
4 B to 1 MiB, :data:`COMM_BENCH_ARGS`; see :mod:`hpcgan.benchmarks.comm`) and ``hpcgan bench
sharing`` (``sharing_nN.hdf5``, :data:`SHARING_BENCH_ARGS`: how ranks that share cores slow down).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
from tqdm import tqdm

from . import checkpoint
from .algorithms import ALGORITHMS, fields_of, resolve_config
from .config import SECTION_OF, RunConfig, add_config_arguments, config_to_argv, flag, given_values
from .errors import UsageError
from .log import PROGRESS_EVERY, get_logger
from .results.schema import validate

#: ``hpcgan bench comm`` flags of the per-rank-count cost-model measurement: what
#: :func:`hpcgan.analysis.costmodel.fit_network` reads (mpi backend, dense allreduce), kept quick.
COMM_BENCH_ARGS = ["--backends", "mpi", "--compressors=", "--min-size", "4", "--max-size", "1MiB",
                   "--iters", "20", "--warmup", "2"]

#: ``hpcgan bench sharing`` flags: works spanning the step times of small models, kept quick.
SHARING_BENCH_ARGS = ["--work", "0.001,0.004,0.016", "--iters", "100"]

#: Fields the sweep sets per configuration (excluded from the pass-through train flags).
SWEEP_FIELDS = frozenset({"algo", "scaling", "out", "force", "resume"})
DEFAULT_LAUNCHER = str(Path(sys.executable).parent / "mpiexec") + " -n {n}"


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


def parse_algo_flags(items: list[str]) -> dict[str, dict[str, Any]]:
    """``--algo-flags 'ALGO: FLAGS'`` (repeatable) -> {ALGO: {field: value}}. ALGO must be a
    registered algorithm; flags of one the sweep does not run are unused (scripts can set them for all)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        algo, sep, flags = item.partition(":")
        if not sep:
            raise UsageError(f"--algo-flags takes 'ALGO: FLAGS', e.g. 'dposg: --topology torus'; got '{item}'")
        ALGORITHMS.get(algo.strip())
        out.setdefault(algo.strip(), {}).update(parse_train_flags(shlex.split(flags)))
    return out


def parse_train_flags(flags: list[str]) -> dict[str, Any]:
    """The config fields that ``train`` flags set, as ``{field: value}``."""
    parser = argparse.ArgumentParser(prog="--algo-flags", exit_on_error=False, add_help=False)
    add_config_arguments(parser)
    try:
        ns, unknown = parser.parse_known_args(flags)
    except argparse.ArgumentError as e:
        raise UsageError(f"--algo-flags {shlex.join(flags)}: {e}") from None
    if unknown:
        raise UsageError(f"--algo-flags {shlex.join(flags)}: unknown train flags {shlex.join(unknown)}")
    return given_values(ns)


def plan(base: dict[str, Any], algos: list[str], ranks: list[int], scaling: str, repeats: int,
         out: Path, algo_flags: dict[str, dict[str, Any]] | None = None) -> list[Job]:
    """Every (algorithm, ranks, repeat) configuration of the sweep, in launch order. ``base`` holds
    the train flags given for every algorithm, ``algo_flags`` those of single algorithms; each
    algorithm's configuration is resolved (its defaults under the flags) before anything runs."""
    if scaling not in ("weak", "strong"):
        raise UsageError(f"--scaling must be weak or strong, got '{scaling}'")
    if repeats < 1:
        raise UsageError("--repeats must be >= 1")
    jobs = []
    for algo in algos:
        rule = ALGORITHMS.get(algo).weak_scaling  # unknown names fail here, before anything is launched
        try:
            mine = resolve_config({**base, **(algo_flags or {}).get(algo, {}), "algo": algo})
        except UsageError as e:
            raise UsageError(f"sweep: {e} (give flags of one algorithm with --algo-flags '{algo}: ...')") from None
        b = mine.data.batch_size
        bad = [n for n in ranks if b % n] if scaling == "strong" else []
        if bad:
            raise UsageError(f"strong scaling keeps the global batch {b}: not divisible by ranks {bad}")
        for n in ranks:
            for r in range(repeats):
                changes = {"data": {"batch_size": b if scaling == "weak" else b // n},
                           "run": {"scaling": scaling, "seed": mine.run.seed + r,
                                   "out": str(out / f"{algo}_{scaling}_n{n}_r{r}.h5"), "force": True}}
                if scaling == "weak" and rule is not None:
                    per_rank = mine.value(rule.field)
                    if per_rank < 1:
                        raise UsageError(f"weak scaling of {algo}: give {flag(rule.field)} K (K per rank), {rule.why}")
                    changes.setdefault(SECTION_OF[rule.field], {})[rule.field] = per_rank * n
                jobs.append(Job(algo, n, r, mine.replace(**changes)))
    return jobs


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


#: Exit statuses of a run stopped by SIGUSR1 (Slurm's time-limit warning) or SIGTERM (the limit).
STOPPED_BY_SIGNAL = (128 + signal.SIGUSR1, 128 + signal.SIGTERM)


def continued(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``--resume`` instead of ``--force`` when its run left a checkpoint."""
    if cfg.run.force and checkpoint.folder(cfg.run.out).is_dir():
        return cfg.replace(run={"force": False, "resume": True})
    return cfg


def launch_argv(launcher: str, n: int, hpcgan_args: list[str]) -> list[str]:
    """``<launcher with {n}> python -m mpi4py -m hpcgan <args>``."""
    if "{n}" not in launcher:
        raise UsageError(f"--launcher must contain {{n}} for the rank count, got '{launcher}'")
    return [*shlex.split(launcher.replace("{n}", str(n))), sys.executable, "-m", "mpi4py", "-m", "hpcgan",
            *hpcgan_args]


def run_logged(argv: list[str], log: Path, timeout: float, threads: int = 0) -> int:
    """Run ``argv`` with its output in ``log`` (the command line first); its exit status, 124 on timeout.
    While it runs, a line every PROGRESS_EVERY seconds says how long it has run and repeats the
    last line of its log (its own progress)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"HPCGAN_THREADS": str(threads)} if threads else {})}
    with open(log, "w") as f:
        f.write(shlex.join(argv) + "\n")
        f.flush()
        proc, t0 = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env), time.monotonic()
        while True:
            try:
                return proc.wait(timeout=max(0.0, min(PROGRESS_EVERY, timeout - (time.monotonic() - t0))))
            except subprocess.TimeoutExpired:
                if time.monotonic() - t0 >= timeout:
                    proc.kill()
                    proc.wait()
                    f.write(f"\nhpcgan sweep: killed after {timeout:.0f} s\n")
                    return 124
                get_logger().info("%s: running for %.0f s; %s", log.stem, time.monotonic() - t0, _tail(log, 1))


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
    tasks = [(j.name, j.ranks, j.path,
              ["train", *config_to_argv(continued(j.cfg), fields_of(ALGORITHMS.get(j.algo)))]) for j in jobs]
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
    failed, stopped, t0 = [], 0, time.perf_counter()
    bar = tqdm(pending, desc="sweep", unit="run", file=sys.stderr, disable=None)
    for name, n, path, args in bar:
        bar.set_postfix_str(name)
        ts = time.perf_counter()
        code = run_logged(launch_argv(launcher, n, args), path.with_suffix(".log"), timeout, threads)
        if code == 0:
            log.info("%-22s done in %.1f s -> %s", name, time.perf_counter() - ts, path)
        else:
            failed.append(name)
            log.error("%-22s FAILED (exit %d); last lines of %s:\n%s", name, code, path.with_suffix(".log"),
                      _tail(path.with_suffix(".log")))
            if code in STOPPED_BY_SIGNAL:
                log.error("sweep: %s was stopped by a signal: the job's time is up; not launching the rest", name)
                stopped = code
                break
    bar.close()
    log.info("sweep: %d run(s) launched, %d skipped, %d failed, %.1f s wall -> %s", len(pending),
             len(tasks) - len(pending), len(failed),
             time.perf_counter() - t0, out)
    return stopped or (1 if failed else 0)


def write_manifest(out: Path, jobs: list[Job], scaling: str, launcher: str, threads: int) -> None:
    """sweep_<scaling>.json: what was asked for (the runs' own attrs remain the source of truth)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"sweep_{scaling}.json"
    runs = {r["name"]: r for r in (json.loads(path.read_text())["runs"] if path.exists() else [])}
    runs.update({j.name: {"name": j.name, "algo": j.algo, "ranks": j.ranks, "repeat": j.repeat, "file": j.path.name}
                 for j in jobs})  # a sweep split over jobs (Slurm array tasks) lists every part's runs
    manifest = {"scaling": scaling, "launcher": launcher, "threads_per_rank": threads or "default",
                "runs": list(runs.values())}
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)
