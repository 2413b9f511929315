"""``hpcgan <command>`` / ``python -m hpcgan <command>``.

Launch multi-rank commands as ``mpiexec -n P python -m mpi4py -m hpcgan ...`` (or ``srun python -m
mpi4py -m hpcgan ...``). Error policy (see :mod:`hpcgan.errors`):

* a :class:`~hpcgan.errors.CollectiveError` (bad flags, an existing output, a NaN loss, a signal)
  raised on every rank: the ranks meet on a private communicator, rank 0 prints one line and all
  exit with its code;
* one raised on some ranks only (a file missing on one node): the others never come, so after
  :data:`GRACE_S` seconds each such rank prints one line naming its rank and aborts the job;
* any other exception is a fault on one rank: that rank prints the rank and traceback to stderr and
  aborts the whole job at once;
* a rank leaving through ``os._exit`` (which skips all of the above) first prints its rank and
  status, never exits 0 and aborts the job: MPICH's launcher would otherwise end the job with
  status 0 and nothing printed (it names no rank for an exit status; ``mpiexec
  -print-all-exitcodes`` lists every rank's status, and for a rank killed by a signal it prints
  the PID and the signal), and could leave the other ranks waiting.

No rank is left waiting in a collective.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

from mpi4py import MPI

from .errors import CollectiveError, UsageError, UsageParser, collectively
from .signals import hold_early


def cmd_info(args: argparse.Namespace) -> int:
    from .comm.torchdist import choose_backend
    from .compress.sign import implementation
    from .info import every_rank_info, machine, mpi_transfer, versions
    from .world import init_world

    world = init_world()
    rows = every_rank_info(world)
    kernel = implementation()  # compiles the C kernels on first use
    if world.rank == 0:
        import torch.distributed as dist

        for key, value in versions().items():
            print(f"{key:>13}: {value}")
        print(f"{'world size':>13}: {world.size}")
        print(f"{'machine':>13}: {machine(world.device)}")
        print(f"{'sign kernel':>13}: {kernel} (rank 0)")
        print(f"{'mpi backend':>13}: {mpi_transfer(world.device)} (rank 0, --cuda-aware-mpi auto)")
        gpus = [(row["host"], row["gpu_uuid"] or None) for row in rows]
        torch_backend = choose_backend(gpus, dist.is_available() and dist.is_nccl_available())
        print(f"{'torch backend':>13}: {torch_backend}" + (" (CUDA tensors host-staged)"
                                                         if torch_backend == "gloo" and gpus[0][1] else ""))
        for row in rows:
            print("rank {rank:>4}  host {host}  local_rank {local_rank}/{local_size}  cpus {cpu_affinity}  threads {threads}"
                  "  CUDA_VISIBLE_DEVICES {cuda_visible_devices}  device {device} ({device_name})"
                  "  MPI {mpi_library}  CUDA-aware {cuda}".format(**row, cuda="yes" if row["mpi_cuda_aware"] else "no"))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .algorithms import resolve_config
    from .config import given_values
    from .train import train
    from .world import init_world

    cfg = resolve_config(given_values(args))  # before any model or communicator exists
    train(cfg, init_world(device=cfg.run.device))
    return 0


def cmd_preflight(args: argparse.Namespace) -> int:
    from .preflight import preflight
    from .signals import held

    status = preflight(args.device, args.cuda_aware_mpi, args.allow_shared_gpu)
    # Slurm's time-limit warning during the check: say so by the status, so the job requeues
    signum = MPI.COMM_WORLD.allreduce(held(), op=MPI.MAX)
    return 128 + signum if signum else status


def cmd_validate(args: argparse.Namespace) -> int:
    from .results.schema import validate

    status = 0
    missing = [path for path in args.files if not os.path.exists(path)]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    if MPI.COMM_WORLD.rank == 0:
        for path in args.files:
            problems = validate(path)
            print(f"{path}: {'OK' if not problems else 'INVALID'}")
            for p in problems:
                print(f"  - {p}")
            status = status or (1 if problems else 0)
    return MPI.COMM_WORLD.bcast(status, root=0)


def cmd_bench(args: argparse.Namespace) -> int:
    from .benchmarks import BENCHMARKS

    if args.what is None:
        if MPI.COMM_WORLD.rank == 0:
            print("hpcgan bench NAME [flags]   (NAME --help: its flags)")
            for name in BENCHMARKS:
                doc = sys.modules[BENCHMARKS.get(name).__module__].__doc__ or ""
                first = " ".join(doc.split("\n\n")[0].split())  # first paragraph: "``hpcgan bench X``: what"
                print(f"  {name:<10} {first.partition('``: ')[2] or first}")
        return 0
    try:
        return BENCHMARKS.get(args.what)(args.rest)
    except SystemExit as e:  # a benchmark's own parser: --help, or a bad flag (its message is printed)
        return int(e.code or 0)


def cmd_summary(args: argparse.Namespace) -> int:
    from .analysis.summary import summarize

    comm = MPI.COMM_WORLD
    text = collectively(comm, lambda: summarize(args.paths) if comm.rank == 0 else "")
    if comm.rank == 0:
        print(text)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import eval_command, report, train_proxy_command
    from .world import init_world

    world = init_world()
    if args.train_proxy:
        if not args.data:
            raise UsageError("--train-proxy needs --data NAME")
        result = train_proxy_command(args.data, world, args.epochs, args.proxy)
    else:
        result = eval_command(args, world)
    if world.rank == 0:
        report(result if isinstance(result, list) else [result], args.out)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .config import given_values
    from .sweep import parse_algo_flags, parse_ints, plan, run_sweep, write_manifest

    if MPI.COMM_WORLD.size > 1:
        raise UsageError("hpcgan sweep is a single process that launches the runs; do not start it with mpiexec")
    out, algos = Path(args.out), args.algos.split(",")
    base, flags = given_values(args), parse_algo_flags(args.algo_flags)
    jobs = {scaling: plan(base, algos, parse_ints(args.ranks), scaling, args.repeats, out, flags)
            for scaling in args.scaling.split(",")}  # every configuration is checked before anything runs
    if not args.dry_run:
        for scaling, mine in jobs.items():
            write_manifest(out, mine, scaling, args.launcher, args.threads)
    return run_sweep([j for mine in jobs.values() for j in mine], out, args.launcher, args.run_timeout,
                     args.comm_bench, args.dry_run, args.threads)


def cmd_grid(args: argparse.Namespace) -> int:
    from .grid import run

    if MPI.COMM_WORLD.size > 1:
        raise UsageError("hpcgan grid draws on one process; do not start it with mpiexec")
    return run(args)


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .analysis.report import write_report
    from .netmodel import NetworkModel

    comm = MPI.COMM_WORLD
    net = NetworkModel(args.latency, args.bandwidth, "chosen for the projection")
    path = collectively(comm, lambda: write_report(args.paths, Path(args.out), net, args.metric, args.overlap,
                                                   args.target) if comm.rank == 0 else None)
    if comm.rank == 0:
        print(path)
    return 0


def train_description() -> str:
    from .algorithms import ALGORITHMS
    from .config import flag_fields

    lines = ["Train one configuration and write one results file. Each algorithm sets its own defaults "
             "(shown per flag) and accepts only the flags it uses:"]
    for name in ALGORITHMS:
        algo = ALGORITHMS.get(name)
        own = sorted(flag_fields(algo.options))
        lines.append(f"  {name}: {algo.summary}" + (f" [own flags: {', '.join('--' + o.replace('_', '-') for o in own)}]"
                                                     if own else ""))
    return "\n".join(lines)


def cmd_claims(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .claims import main as claims_main

    if MPI.COMM_WORLD.size > 1:
        raise UsageError("hpcgan claims is a single process that launches the runs; do not start it with mpiexec")
    return claims_main(args.quick, args.seeds, Path(args.out), args.launcher, args.only)


def build_parser() -> argparse.ArgumentParser:
    from .algorithms import defaults_help
    from .config import add_config_arguments
    from .metrics.stats import IS_SPLITS

    parser = UsageParser(prog="hpcgan", description="MPI benchmark suite for distributed GAN training")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=UsageParser)
    sub.add_parser("info", help="versions, MPI library and the rank -> host/device map").set_defaults(fn=cmd_info)
    train = sub.add_parser("train", help="train one configuration, write one results file",
                           description=train_description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(train, defaults=defaults_help())
    train.set_defaults(fn=cmd_train)
    pre = sub.add_parser("preflight", help="check the launch before training: MPI world = Slurm step, one GPU "
                         "per rank, device and CUDA-aware MPI as asked (jobs run it first)")
    pre.add_argument("--device", default="auto", help="auto, cuda (every rank needs a GPU) or cpu")
    pre.add_argument("--cuda-aware-mpi", default="auto", help="auto, yes (the library must read GPU memory) or no")
    pre.add_argument("--allow-shared-gpu", action="store_true", help="ranks may share a GPU")
    pre.set_defaults(fn=cmd_preflight)
    val = sub.add_parser("validate", help="check results files against the HDF5 schema")
    val.add_argument("files", nargs="+")
    val.set_defaults(fn=cmd_validate)
    bench = sub.add_parser("bench", help="microbenchmarks: comm, data, recorder, sharing")
    bench.add_argument("what", nargs="?", help="which benchmark (none: list them)")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own flags")
    bench.set_defaults(fn=cmd_bench)
    summ = sub.add_parser("summary", help="one-table summary of results files or folders")
    summ.add_argument("paths", nargs="+")
    summ.set_defaults(fn=cmd_summary)
    ev = sub.add_parser("eval", help="IS/FID, proxy and mixture metrics of a run; --train-proxy")
    ev.add_argument("targets", nargs="*", metavar="RUN", help="RUN.h5 (its final model RUN.h5.model/; the "
                    "metrics go into RUN.h5), or a checkpoint RUN.h5.ckpt/ or rank{r}.pt (printed only)")
    ev.add_argument("--metrics", help="comma list of mog, proxy, inception (default: all available)")
    ev.add_argument("--samples", type=int, default=50000, help="generated samples per model (default: 50000)")
    ev.add_argument("--is-splits", type=int, default=IS_SPLITS, help="Inception-score splits: mean ± std over "
                    "them (default: %(default)s, as papers report)")
    ev.add_argument("--inception-weights", help="local Inception-v3 weights (or $HPCGAN_INCEPTION_WEIGHTS)")
    ev.add_argument("--proxy", help="proxy classifier file (default: next to the dataset / in the cache)")
    ev.add_argument("--data", help="dataset (default: the run's); required with --real / --train-proxy")
    ev.add_argument("--real", action="store_true", help="evaluate real images of --data instead of a run")
    ev.add_argument("--train-proxy", action="store_true", help="train and save the proxy classifier")
    ev.add_argument("--epochs", type=int, default=10, help="proxy training epochs")
    ev.add_argument("--out", help="also write the metrics as JSON")
    ev.set_defaults(fn=cmd_eval)
    from .grid import add_arguments as grid_arguments

    grid_arguments(sub.add_parser("grid", help="draw samples of a run's final model: an image grid, or a scatter "
                                  "over a 2-D mixture's modes")).set_defaults(fn=cmd_grid)
    add_sweep_parsers(sub)
    add_claims_parser(sub)
    return parser


def add_claims_parser(sub) -> None:
    from .sweep import DEFAULT_LAUNCHER

    cl = sub.add_parser("claims", help="the three papers' claims over seeds, with 95%% CIs and verdicts (claims.md)")
    cl.add_argument("--quick", action="store_true", help="fewer claims per paper, fewer steps (under 10 minutes)")
    cl.add_argument("--only", metavar="PAPERS", help="only the claims of these papers, comma-separated: DQGAN, "
                    "hpcgan, DPOSG, 'Parallel W-CGAN' (default: all)")
    cl.add_argument("--seeds", type=int, default=3, help="seeds per arm (default: 3; at least 2)")
    cl.add_argument("--out", default="results/claims", help="folder for runs, claims.md and claims.png")
    cl.add_argument("--launcher", default=DEFAULT_LAUNCHER, help="launch command with {n} for the rank count")
    cl.set_defaults(fn=cmd_claims)


def add_sweep_parsers(sub) -> None:
    from .algorithms import defaults_help
    from .config import add_config_arguments
    from .sweep import DEFAULT_LAUNCHER, SWEEP_FIELDS

    sw = sub.add_parser("sweep", help="weak/strong scaling sweep: one run per algorithm x ranks x repeat",
                        description="Train flags are passed to every run; --batch-size is the 1-rank batch b "
                                    "(weak: b per rank; strong: b/N per rank).")
    sw.add_argument("--algos", default="sync", help="comma-separated algorithm names")
    sw.add_argument("--ranks", default="1,2,4", help="comma-separated rank counts")
    sw.add_argument("--scaling", required=True, help="weak, strong, or weak,strong (both, one folder)")
    sw.add_argument("--algo-flags", action="append", default=[], metavar="'ALGO: FLAGS'",
                    help="train flags for one algorithm, e.g. 'dposg: --topology torus' (repeatable); flags "
                    "given outside --algo-flags must be used by every algorithm of the sweep")
    sw.add_argument("--repeats", type=int, default=1, help="runs per configuration, seeds seed..seed+R-1")
    sw.add_argument("--out", required=True, help="sweep folder, e.g. results/<sweep>")
    sw.add_argument("--launcher", default=DEFAULT_LAUNCHER, help="launch command with {n} for the rank count, "
                    "e.g. 'srun --ntasks={n} --cpu-bind=cores' (default: %(default)s)")
    sw.add_argument("--run-timeout", type=float, default=3600, help="seconds before one run is killed")
    sw.add_argument("--comm-bench", action=argparse.BooleanOptionalAction, default=True,
                    help="also run `hpcgan bench comm` (mpi, dense) and `hpcgan bench sharing` per rank count "
                    "(for the cost model)")
    sw.add_argument("--dry-run", action="store_true", help="print the launch lines, run nothing")
    sw.add_argument("--threads", type=int, default=0, help="torch threads per rank in every run "
                    "(HPCGAN_THREADS; 0 = cores per rank on the node)")
    add_config_arguments(sw, exclude=SWEEP_FIELDS, defaults=defaults_help())
    sw.set_defaults(fn=cmd_sweep)
    rep = sub.add_parser("report", help="report.md + PNG plots of a sweep, with the cost model")
    rep.add_argument("paths", nargs="+", help="sweep folders or results files")
    rep.add_argument("--out", required=True, help="report folder, e.g. reports/<sweep>")
    rep.add_argument("--latency", type=float, default=2e-6, help="projection network latency alpha [s]")
    rep.add_argument("--bandwidth", type=float, default=25e9, help="projection network bandwidth B [bytes/s]")
    rep.add_argument("--metric", help="quality metric of every table and plot (default per dataset: fid, else "
                     "proxy_fid, else modes_covered)")
    rep.add_argument("--overlap", type=_fraction, help="fraction of communication hidden behind compute in the "
                     "time-to-quality projection (default: measured from t_comm_hidden, else 0)")
    rep.add_argument("--target", type=float, help="quality Q of the time-to-quality table (default: the worst "
                     "mean final quality of the configurations evaluated during training)")
    rep.set_defaults(fn=cmd_report)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return value


#: How long ranks that raised a CollectiveError wait for every other rank to raise it too before
#: concluding that it was raised on some ranks only and aborting the job. Errors raised together
#: arrive within milliseconds of each other (they follow a collective agreement).
GRACE_S = 10.0

_exit = os._exit  # the process exit, without the report that main() puts around it


def main(argv: list[str] | None = None) -> int:
    world = MPI.COMM_WORLD
    rank, size = world.rank, world.size
    from .log import setup_logging

    setup_logging(rank)
    if (sys.argv[1:] if argv is None else argv)[:1] in (["train"], ["preflight"]):
        hold_early()  # a stop signal during the slow start-up is not lost (hpcgan.signals)
    exits = world.Dup()  # the exit agreement never meets a collective of the command
    os._exit = _reporting_exit(rank, size)
    try:
        args = build_parser().parse_args(argv)
        return args.fn(args)
    except CollectiveError as e:
        if not _all_arrive(exits, GRACE_S):
            _print(f"hpcgan: error: rank {rank} of {size}: {e} (the other ranks went on: aborting the job)")
            _abort(world, e.exit_code)
        if rank == 0:
            _print(f"hpcgan: error: {e}")
        return e.exit_code
    except Exception:
        _print(f"hpcgan: rank {rank} of {size} failed:\n{traceback.format_exc()}")
        if size > 1:
            _abort(world, 1)
        return 1
    finally:
        os._exit = _exit


#: seconds a rank waits after its last line before aborting: the launcher forwards stderr
#: asynchronously, and an abort that comes first can lose the line that says why (seen under load)
ABORT_GRACE_S = 1.0


def _abort(world: MPI.Comm, code: int) -> None:
    time.sleep(ABORT_GRACE_S)
    world.Abort(code)


def _print(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


def _all_arrive(comm: MPI.Comm, timeout: float) -> bool:
    """True when every rank of ``comm`` reaches this call within ``timeout`` seconds."""
    request = comm.Ibarrier()
    deadline = time.monotonic() + timeout
    while not request.Test():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _reporting_exit(rank: int, size: int):
    """``os._exit`` for this process that first names the rank, never reports success and, in a
    job of several ranks, aborts the job: the launcher's noticing a rank gone is not to be relied
    on (once in a full test run, mpiexec kept the other rank waiting in a collective)."""
    pid = os.getpid()

    def reporting_exit(status: int) -> None:
        if os.getpid() == pid:  # not a forked child (data workers exit this way)
            _print(f"hpcgan: rank {rank} of {size} exited with status {status} (os._exit) before the "
                   "command ended")
            status = status or 1
            if size > 1:
                _abort(MPI.COMM_WORLD, status)
        _exit(status)
    return reporting_exit


def run() -> None:
    """Process entry point: exit with main's status without tripping MPI_Abort.

    ``python -m mpi4py`` turns a non-zero exit into MPI_Abort (and a launcher banner). After a
    collective error every rank is here together, so finalize MPI and leave with the status.
    """
    code = main()
    if code:
        sys.stdout.flush()
        sys.stderr.flush()
        MPI.Finalize()
        _exit(code)


if __name__ == "__main__":
    run()
