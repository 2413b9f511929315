"""The training drivers: build a run from its config, loop, record, evaluate, checkpoint, and keep
the final model (``RUN.h5.model/``, :mod:`hpcgan.results.model`) for ``hpcgan eval``. What every
run shares is :class:`Trainer`; how the ranks step and stop is its driver's:
:class:`LockstepTrainer` or :class:`OwnClockTrainer`, by the algorithm's ``lockstep``.

Everything collective happens outside the algorithm's timed phases: the recorder's flush, the
stop decision, evaluation and checkpoints. A checkpoint is taken right after a flush, so the
results file and the checkpoint always describe the same step, and ``--resume`` continues both.

Budget. ``--budget SECONDS`` is SECONDS of training on every rank (P ranks: P*SECONDS rank-seconds):
the clock (``elapsed``) leaves out evaluations during training, so an algorithm that evaluates
more, or computes reference statistics on its first evaluation, trains as long as one that does not.

Stopping. Lockstep ranks stop at the same step, decided together where they synchronise anyway:
every step of a ``--budget`` run (rank 0's clock) and right after each flush. A stop signal
(:mod:`hpcgan.signals`: SIGTERM, SIGINT, SIGUSR1) received by any rank is acted on at the next such
point (at most ``--flush-every`` steps later): the rows are flushed, a checkpoint is written if
``--ckpt-every`` is set, ``stopped_reason`` says why, and every rank exits with 128 + the signal.

Ranks of an algorithm that is not lockstep (pcwgan) never wait for each other while training:
each records its rows into its own file, ``<out>.ckpt/rank{r}.steps.hdf5``, checkpoints and
evaluates (``--eval-every``, :mod:`hpcgan.metrics.deferred`) on its own clock; a signal or an error
stops that rank alone. At the end the ranks agree on how the run ended, merge their rows and
evaluations into the results file; ``--resume`` continues every rank from its own checkpoint and
step.

A requeued Slurm job (``--requeue``: the same SLURM_JOB_ID, recorded in the results file) that finds
its own ``--out`` and checkpoints continues from them without ``--resume``.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from . import checkpoint
from .algorithms import ALGORITHMS, Algorithm, TrainContext
from .comm import build_communicator
from .comm.control import ControlChannel
from .config import RunConfig
from .data import build_dataset
from .errors import (CollectiveError, Interrupted, NonFiniteLossError, UsageError, agree, collectively,
                     signal_name)
from .info import machine, ranks_attrs, versions
from .log import PROGRESS_EVERY, Eta, get_logger
from .metrics import build_evaluator, deferred
from .resources import check_fits
from .results.lock import RunLock
from .results.model import save_final_model
from .results.outputs import claim_outputs
from .results.recorder import COLUMNS, Recorder
from .signals import StopSignals
from .world import World, seed_everything

#: Settings a resumed run may change (to extend it, or after moving the results file together
#: with its .ckpt folder); everything else must match the checkpoint.
RESUMABLE_CHANGES = {"steps", "budget", "resume", "force", "log_every", "out"}


def check_same_config(cfg: RunConfig, world: World) -> None:
    digests = world.comm.allgather(cfg.digest())
    if len(set(digests)) > 1:
        differing = [r for r, d in enumerate(digests) if d != digests[0]]
        raise UsageError(f"ranks were started with different configurations (ranks {differing} differ "
                         "from rank 0); launch every rank with the same arguments")


def check_out_is_not_an_input(cfg: RunConfig) -> None:
    """UsageError if ``--out`` names a file the run reads (``--force`` would delete it)."""
    out = Path(cfg.run.out)
    inputs = {f"--data {cfg.data.data}": cfg.data.data.partition(":")[2] if cfg.data.data.startswith("h5:") else "",
              f"--topology {cfg.algo.topology}": cfg.algo.topology}
    for given, name in inputs.items():
        if name and out.exists() and Path(name).exists() and os.path.samefile(name, out):
            raise UsageError(f"--out {out} is the run's input ({given}); write the results elsewhere")


def checkpoint_path(cfg: RunConfig, rank: int) -> Path:
    return checkpoint.checkpoint_path(cfg.run.out, rank)


def rows_path(cfg: RunConfig, rank: int) -> Path:
    """Where a rank that trains on its own clock records its rows."""
    return checkpoint.folder(cfg.run.out) / f"rank{rank}.steps.hdf5"


def read_rows(path: Path) -> np.ndarray:
    """The (n, columns) rows of a one-rank results file."""
    with h5py.File(path, "r") as f:
        return np.stack([f["steps"][c.name][:, 0].astype(np.float64) for c in COLUMNS], axis=1)


def run_attrs(cfg: RunConfig, world: World, algo: Algorithm) -> dict[str, Any]:
    hosts = world.comm.allgather(world.host)
    return {
        "algorithm": cfg.algo.algo, "backend": cfg.comm.backend, **algo.attrs(),
        "world_size": world.size, "scaling": cfg.run.scaling, "local_batch": cfg.data.batch_size,
        "global_batch": cfg.data.batch_size * world.size, "warmup_steps": cfg.run.warmup_steps,
        "config_json": cfg.to_json(), "versions_json": json.dumps(versions()),
        "machine": machine(world.device), "hostnames": json.dumps(hosts),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
        **ranks_attrs(world),  # where each rank ran: host, threads, cores, GPU, MPI library
    }


def requeued(cfg: RunConfig, comm: ControlChannel) -> bool:
    """Collective: is this a requeued Slurm job meeting its own run (``--out`` written by this
    SLURM_JOB_ID, a checkpoint on every rank) that should continue without ``--resume``?"""
    job = os.environ.get("SLURM_JOB_ID", "")
    if cfg.run.resume or cfg.run.force or not job:
        return False
    mine = False
    if comm.rank == 0 and Path(cfg.run.out).is_file():
        try:
            with h5py.File(cfg.run.out, "r") as f:
                mine = f.attrs.get("slurm_job_id") == job
        except OSError:
            pass
    return bool(comm.bcast(mine, root=0)) and comm.allreduce(int(checkpoint_path(cfg, comm.rank).is_file()),
                                                             op="min") == 1


class Trainer:
    """What every run does: build it from its config, record, evaluate, checkpoint, keep the final
    model. ``Trainer(cfg, world)`` builds the driver the algorithm needs: :class:`LockstepTrainer`
    (every rank takes every step together) or :class:`OwnClockTrainer` (each rank on its own
    clock); each decides when to stop and how a run ends."""

    def __new__(cls, cfg: RunConfig, world: World):
        if cls is Trainer:
            cls = LockstepTrainer if ALGORITHMS.get(cfg.algo.algo).lockstep else OwnClockTrainer
        return super().__new__(cls)

    def __init__(self, cfg: RunConfig, world: World):
        self.world, self.log = world, get_logger()
        check_same_config(cfg, world)
        check_out_is_not_an_input(cfg)
        if requeued(cfg, world.comm):
            self.log.info("requeued Slurm job %s: continuing %s from its checkpoints", os.environ["SLURM_JOB_ID"],
                          cfg.run.out)
            cfg = cfg.replace(run={"resume": True})
        self.check(cfg)
        self.cfg = cfg
        claim_outputs(cfg.run.out, cfg.run.force, cfg.run.resume, world.comm)  # earlier runs' files: --force only
        seed_everything(cfg.run.seed, world.rank)
        dataset = collectively(world.comm, lambda: build_dataset(cfg.data.data, shard=cfg.data.shard,
                                                                 labels=cfg.data.labels))
        collectively(world.comm, lambda: check_fits(cfg, dataset.spec, world))  # before any model exists
        self.comm = build_communicator(cfg.comm, world.comm)
        self.algo = ALGORITHMS.get(cfg.algo.algo)(TrainContext(cfg, world, self.comm, dataset))
        self.evaluator = build_evaluator(dataset, device=world.device, data=cfg.data.data)
        self.loader = self.algo.make_loader()
        self.start_step, self.elapsed0, self.last_ckpt = 0, 0.0, -1
        self.last_eval_step, self.last_eval = -1, {}
        self.stop_signal = 0
        self.identity = checkpoint.new_identity(cfg, world.comm)  # on resume, the checkpoint's
        if cfg.run.resume:
            self._load_checkpoint()
        mode = "resume" if cfg.run.resume else ("force" if cfg.run.force else "create")
        attrs = {**run_attrs(cfg, world, self.algo), **self.identity}
        self.recorder = Recorder(cfg.run.out, world.comm, attrs, cfg.run.flush_every, mode, self.first_row())
        self.rows = self.open_rows(attrs)

    # -- what a driver decides -------------------------------------------------------------------
    #: the ranks that flush and checkpoint together
    peers: ControlChannel

    def check(self, cfg: RunConfig) -> None:
        """UsageError if ``cfg`` cannot run under this driver."""

    def first_row(self) -> int:
        """The results file's row count to continue from."""
        return self.start_step

    def open_rows(self, attrs: dict[str, Any]) -> Recorder:
        """Where this rank's step rows go."""
        return self.recorder

    def should_stop(self, step: int, elapsed: float, signals: StopSignals) -> bool:
        raise NotImplementedError

    def on_error(self, e: CollectiveError) -> None:
        """An error raised while training (re-raise to stop every rank together)."""
        raise e

    def end_training(self, step: int, elapsed: float) -> None:
        """Collective, once every rank stopped: raise why the run stopped early, if it did."""
        if self.stop_signal:
            where = (f"checkpoint in {checkpoint.folder(self.cfg.run.out)}: continue with --resume"
                     if self.cfg.run.ckpt_every else "no checkpoint (--ckpt-every 0)")
            raise Interrupted(self.stop_signal, f"stopped by {signal_name(self.stop_signal)} at step {step} "
                                                f"after {elapsed:.0f} s; {where}")

    # -- main loop -----------------------------------------------------------------------------
    def run(self) -> Path:
        cfg, run = self.cfg, self.cfg.run
        self.log.info("%s on %d rank(s), data=%s model=%s -> %s", cfg.algo.algo, self.world.size,
                      cfg.data.data, cfg.model.model, run.out)
        try:
            with StopSignals() as signals:
                step, walls, elapsed = self._train(signals)
                self.end_training(step, elapsed)
                self.algo.finish(self.recorder)
                save_final_model(run.out, self.algo.final_models(), cfg, step, self.world.comm)
                metrics = self.final_evaluation(step)
        except CollectiveError as e:
            if e.agreed:  # else some ranks may be inside a collective: leave the file as last flushed
                self.recorder.close(finished=False, reason=str(e))
            raise
        self.recorder.close(finished=True)
        self._summary(step, walls, metrics)
        return Path(run.out)

    def _train(self, signals: StopSignals) -> tuple[int, list[float], float]:
        """Train until done or stopped; returns (steps reached, step walls, elapsed seconds)."""
        run = self.cfg.run
        t0 = time.perf_counter() - self.elapsed0
        step, walls, self.logged_at = self.start_step, [], time.perf_counter()
        try:
            while not self.should_stop(step, time.perf_counter() - t0, signals):
                ts = time.perf_counter()
                stats = self.algo.step(next(self.loader), step)
                stats.step, stats.wall = step, time.perf_counter() - ts
                stats.elapsed = time.perf_counter() - t0
                self.rows.record(stats)
                self.algo.after_step(self.recorder, step)
                walls.append(stats.wall)
                step += 1
                if step % run.log_every == 0 or time.perf_counter() - self.logged_at >= PROGRESS_EVERY:
                    self._progress(step, stats, walls)
                if run.eval_every and step % run.eval_every == 0:
                    evaluated = time.perf_counter()
                    self.evaluate(step)
                    t0 += time.perf_counter() - evaluated  # not training: --budget and elapsed leave it out
                if run.ckpt_every and step % run.ckpt_every == 0:
                    self._save_checkpoint(step, time.perf_counter() - t0)
            if self.stop_signal:
                self._save_checkpoint(step, time.perf_counter() - t0)
        except CollectiveError as e:
            self.on_error(e)
        return step, walls, time.perf_counter() - t0

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, step: int) -> dict[str, float]:
        self.last_eval_step = step
        if self.evaluator is None:
            return {}
        metrics: dict[str, float] = {}
        for suffix, sampler in self.algo.samplers().items():
            got = self.evaluator.evaluate(sampler, self.cfg.run.eval_samples, self.world.comm)
            metrics.update({(f"{k}_{suffix}" if suffix else k): v for k, v in got.items()})
        self.recorder.record_series("eval", step, metrics, samples=self.cfg.run.eval_samples,
                                    is_splits=self.evaluator.is_splits)
        self.log.info("eval @ step %d: %s", step,  # per-label values: in the file only
                      "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "_label" not in k))
        self.last_eval = metrics
        return metrics

    def final_evaluation(self, step: int) -> dict[str, float]:
        """Collective, after training: the final model's metrics (unless evaluated at ``step``)."""
        return self.last_eval if self.last_eval_step == step else self.evaluate(step)

    # -- checkpoints ---------------------------------------------------------------------------
    def _save_checkpoint(self, step: int, elapsed: float) -> None:
        """Flush this rank's rows, then checkpoint (together with ``self.peers``), unless done at this step."""
        if not self.cfg.run.ckpt_every or self.last_ckpt == step:
            return
        self.rows.flush()
        state = {"step": step, "elapsed": elapsed, "world_size": self.world.size, "algo": self.cfg.algo.algo,
                 "config_json": self.cfg.to_json(), "algorithm": self.algo.state_dict(),
                 "loader": self.loader.state_dict(), "torch_rng": torch.get_rng_state(),
                 "numpy_rng": checkpoint.numpy_rng_state(), **self.identity}
        checkpoint.save(checkpoint_path(self.cfg, self.world.rank), state, self.peers)
        self.last_ckpt = step

    def _load_checkpoint(self) -> None:
        """Collective: every rank's checkpoint, checked to continue this run on these ranks."""
        state = checkpoint.load_resumable(checkpoint_path(self.cfg, self.world.rank), self.cfg.to_json(),
                                          self.world.comm, self.peers, self.cfg.run.out, RESUMABLE_CHANGES)
        self.identity = checkpoint.identity_of(state)
        self.algo.load_state_dict(state["algorithm"])
        self.loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["torch_rng"])
        checkpoint.set_numpy_rng_state(state["numpy_rng"])
        self.start_step, self.elapsed0 = int(state["step"]), float(state["elapsed"])
        self.last_ckpt = self.start_step

    # -- reporting -----------------------------------------------------------------------------
    def _progress(self, step: int, stats, walls: list[float]) -> None:
        """A progress line every --log-every steps, or sooner when slow steps would leave the log
        silent for PROGRESS_EVERY seconds."""
        self.logged_at = time.perf_counter()
        recent = float(np.median(walls[-self.cfg.run.log_every:]))
        total = self.cfg.run.steps if self.cfg.run.budget <= 0 else math.nan
        eta = self.__dict__.setdefault("eta", Eta()).line(step, total, fallback=recent)  # recent pace, waits included
        self.log.info("step %d  d_loss %.4f  g_loss %.4f  %.2f ms/step%s", step, stats.d_loss,
                      stats.g_loss, 1e3 * recent, eta)

    def _summary(self, steps: int, walls: list[float], metrics: dict[str, float]) -> None:
        warm = walls[self.cfg.run.warmup_steps:] or walls
        med = float(np.median(warm)) if warm else math.nan
        sent = self.world.comm.allreduce(self.comm.bytes_sent)
        self.log.info("done: %d steps, median %.2f ms/step (rank 0), %d bytes sent by all ranks -> %s",
                      steps, 1e3 * med, sent, self.cfg.run.out)


class LockstepTrainer(Trainer):
    """Every rank takes every step together (collectives inside the step): the ranks stop at the
    same step, decided where they synchronise anyway -- every step of a ``--budget`` run (rank 0's
    clock) and right after each flush -- and an error stops them together."""

    @property
    def peers(self) -> ControlChannel:
        return self.world.comm

    def should_stop(self, step: int, elapsed: float, signals: StopSignals) -> bool:
        run = self.cfg.run
        done = step >= run.steps if run.budget <= 0 else (step > 0 and elapsed >= run.budget)  # >= 1 row
        if run.budget <= 0 and self.rows.buffered:
            return done  # between flushes: step counts agree without asking
        # Rank 0's clock and any rank's signal decide for everyone.
        flags = np.array([int(done) if self.world.rank == 0 else 0, signals.received], dtype=np.int64)
        self.world.comm.allreduce_(flags, op="max")
        self.stop_signal = int(flags[1])
        return bool(flags.any())


class OwnClockTrainer(Trainer):
    """Each rank trains on its own clock and never waits for the others (pcwgan): it records its
    rows into its own file, ``<out>.ckpt/rank{r}.steps.hdf5``, checkpoints alone, and a signal or
    an error stops that rank alone (kept until the end). At the end the ranks agree on how the run
    ended and merge their rows into the results file."""

    @property
    def peers(self) -> ControlChannel:
        return ControlChannel.alone()

    def evaluate(self, step: int) -> dict[str, float]:
        """During training (--eval-every): this rank alone scores its part, merged at the end."""
        if self.evaluator is not None:
            deferred.record(self.evaluator, self.algo.samplers(), self.cfg.run.eval_samples, step,
                            self.world.rank, self.world.size, self.rows)
        return {}

    def final_evaluation(self, step: int) -> dict[str, float]:
        """The points every rank recorded during training, merged into /eval, then the final model
        at the most steps any rank took (:mod:`hpcgan.metrics.deferred`)."""
        final = max(self.world.comm.allgather(step))
        if self.evaluator is not None:
            deferred.merge(self.evaluator, rows_path(self.cfg, self.world.rank), step, final, self.world.comm,
                           self.recorder, self.cfg.run.eval_samples)
        return super().evaluate(final)

    def first_row(self) -> int:
        return 0  # the results file gets every rank's rows at the end

    def open_rows(self, attrs: dict[str, Any]) -> Recorder:
        cfg, world = self.cfg, self.world
        self.local_error: CollectiveError | None = None
        return collectively(world.comm, lambda: Recorder(
            rows_path(cfg, world.rank), ControlChannel.alone(), {**attrs, "world_size": 1}, cfg.run.flush_every,
            "resume" if cfg.run.resume else "force", self.start_step))

    def should_stop(self, step: int, elapsed: float, signals: StopSignals) -> bool:
        run = self.cfg.run
        self.stop_signal = signals.received
        done = step >= run.steps if run.budget <= 0 else (step > 0 and elapsed >= run.budget)  # >= 1 row
        return done or bool(self.stop_signal)

    def on_error(self, e: CollectiveError) -> None:
        if isinstance(e, NonFiniteLossError):  # found in this rank's own rows: name the rank
            e = NonFiniteLossError(e.step, self.world.rank, e.which)
        self.local_error = e

    def end_training(self, step: int, elapsed: float) -> None:
        """Close this rank's rows, merge every rank's into the results file, agree on errors and
        signals; then as every driver."""
        try:
            self.rows.close(finished=not (self.local_error or self.stop_signal))
        except CollectiveError as e:  # a failed write: the file keeps its last complete block
            self.local_error = self.local_error or e
        try:
            rows = read_rows(rows_path(self.cfg, self.world.rank))
        except OSError as e:
            rows, self.local_error = np.empty((0, len(COLUMNS))), self.local_error or e
        self.recorder.merge(rows)
        agree(self.world.comm, self.local_error)
        self.stop_signal = self.world.comm.allreduce(self.stop_signal, op="max")
        super().end_training(step, elapsed)



def train(cfg: RunConfig, world: World) -> Path:
    with RunLock(cfg.run.out, world.comm):  # one run per --out, taken before --force deletes anything
        return Trainer(cfg, world).run()
