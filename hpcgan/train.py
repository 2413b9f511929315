"""The training driver: builds a run from its config, loops, records, evaluates, checkpoints, and
keeps the final model (``RUN.h5.model/``, :mod:`hpcgan.results.model`) for ``hpcgan eval``.

Everything collective happens outside the algorithm's timed phases: the recorder's flush, the
budget decision, evaluation and checkpoints. A checkpoint is taken right after a flush, so the
results file and the checkpoint always describe the same step, and ``--resume`` continues both.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .algorithms import ALGORITHMS, Algorithm, TrainContext
from .comm import build_communicator
from .config import RunConfig
from .data import build_dataset
from .errors import CollectiveError, UsageError
from .info import machine, ranks_attrs, versions
from .log import PROGRESS_EVERY, get_logger
from .metrics import build_evaluator
from .results.model import save_final_model
from .results.recorder import Recorder
from .world import World, seed_everything

#: Settings a resumed run may change (to extend it); everything else must match the checkpoint.
RESUMABLE_CHANGES = {"steps", "budget", "resume", "force", "log_every"}


def check_same_config(cfg: RunConfig, world: World) -> None:
    digests = world.comm.allgather(cfg.digest())
    if len(set(digests)) > 1:
        differing = [r for r, d in enumerate(digests) if d != digests[0]]
        raise UsageError(f"ranks were started with different configurations (ranks {differing} differ "
                         "from rank 0); launch every rank with the same arguments")


def checkpoint_path(cfg: RunConfig, rank: int) -> Path:
    return Path(cfg.run.out + ".ckpt") / f"rank{rank}.pt"


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


class Trainer:
    def __init__(self, cfg: RunConfig, world: World):
        self.cfg, self.world, self.log = cfg, world, get_logger()
        check_same_config(cfg, world)
        seed_everything(cfg.run.seed, world.rank)
        dataset = build_dataset(cfg.data.data, shard=cfg.data.shard, labels=cfg.data.labels)
        self.comm = build_communicator(cfg.comm, world.comm)
        self.algo = ALGORITHMS.get(cfg.algo.algo)(TrainContext(cfg, world, self.comm, dataset))
        if not self.algo.lockstep and (cfg.run.eval_every or cfg.run.ckpt_every or cfg.run.resume):
            raise UsageError(f"--algo {cfg.algo.algo} trains every rank on its own clock: --eval-every, "
                             "--ckpt-every and --resume would make ranks wait for each other during "
                             "training; it is evaluated once, at the end")
        self.evaluator = build_evaluator(dataset, device=world.device, data=cfg.data.data)
        self.loader = self.algo.make_loader()
        self.start_step, self.elapsed0 = 0, 0.0
        self.last_eval_step, self.last_eval = -1, {}
        if cfg.run.resume:
            self._load_checkpoint()
        mode = "resume" if cfg.run.resume else ("force" if cfg.run.force else "create")
        flush_every = cfg.run.flush_every if self.algo.lockstep else 2**62  # independent ranks: at the end
        self.recorder = Recorder(cfg.run.out, world.comm, run_attrs(cfg, world, self.algo),
                                 flush_every, mode, self.start_step)

    # -- main loop -----------------------------------------------------------------------------
    def run(self) -> Path:
        cfg, run = self.cfg, self.cfg.run
        self.log.info("%s on %d rank(s), data=%s model=%s -> %s", cfg.algo.algo, self.world.size,
                      cfg.data.data, cfg.model.model, run.out)
        t0 = time.perf_counter() - self.elapsed0
        step, walls, self.logged_at = self.start_step, [], time.perf_counter()
        try:
            while not self._should_stop(step, time.perf_counter() - t0):
                ts = time.perf_counter()
                stats = self.algo.step(next(self.loader), step)
                stats.step, stats.wall = step, time.perf_counter() - ts
                stats.elapsed = time.perf_counter() - t0
                self.recorder.record(stats)
                self.algo.after_step(self.recorder, step)
                walls.append(stats.wall)
                step += 1
                if step % run.log_every == 0 or time.perf_counter() - self.logged_at >= PROGRESS_EVERY:
                    self._progress(step, stats, walls)
                if run.eval_every and step % run.eval_every == 0:
                    self.evaluate(step)
                if run.ckpt_every and step % run.ckpt_every == 0:
                    self.recorder.flush()
                    self._save_checkpoint(step, time.perf_counter() - t0)
            self.algo.finish(self.recorder)
            save_final_model(run.out, self.algo.final_models(), cfg, step, self.world.comm)
            metrics = self.last_eval if self.last_eval_step == step else self.evaluate(step)
        except CollectiveError as e:
            self.recorder.close(finished=False, reason=str(e))
            raise
        self.recorder.close(finished=True)
        self._summary(step, walls, metrics)
        return Path(run.out)

    def _should_stop(self, step: int, elapsed: float) -> bool:
        run = self.cfg.run
        if run.budget <= 0:
            return step >= run.steps
        over = elapsed >= run.budget
        # Lockstep ranks must stop at the same step: rank 0's clock decides for everyone.
        return bool(self.world.comm.bcast(over, root=0)) if self.algo.lockstep else over

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
        self.log.info("eval @ step %d: %s", step, "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        self.last_eval = metrics
        return metrics

    # -- checkpoints ---------------------------------------------------------------------------
    def _save_checkpoint(self, step: int, elapsed: float) -> None:
        path = checkpoint_path(self.cfg, self.world.rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"step": step, "elapsed": elapsed, "config_json": self.cfg.to_json(),
                 "algorithm": self.algo.state_dict(), "loader": self.loader.state_dict(),
                 "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state()}
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # a crash mid-save keeps the previous checkpoint
        self.world.comm.Barrier()

    def _load_checkpoint(self) -> None:
        path = checkpoint_path(self.cfg, self.world.rank)
        missing = self.world.comm.allreduce(0 if path.exists() else 1)
        if missing:
            raise UsageError(f"cannot resume: no checkpoint {path} (run with --ckpt-every N first)")
        state = torch.load(path, weights_only=False)
        saved = json.loads(state["config_json"])
        now = json.loads(self.cfg.to_json())
        diff = sorted(f"{sec}.{k}" for sec in now for k in now[sec]
                      if k not in RESUMABLE_CHANGES and now[sec][k] != saved[sec].get(k))
        if diff:
            raise UsageError(f"cannot resume {path}: settings differ from the checkpoint: {', '.join(diff)}")
        self.algo.load_state_dict(state["algorithm"])
        self.loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        self.start_step, self.elapsed0 = int(state["step"]), float(state["elapsed"])

    # -- reporting -----------------------------------------------------------------------------
    def _progress(self, step: int, stats, walls: list[float]) -> None:
        """A progress line every --log-every steps, or sooner when slow steps would leave the log
        silent for PROGRESS_EVERY seconds."""
        self.logged_at = time.perf_counter()
        recent = float(np.median(walls[-self.cfg.run.log_every:]))
        total = self.cfg.run.steps if self.cfg.run.budget <= 0 else math.nan
        eta = f"  eta {recent * (total - step):.0f}s" if math.isfinite(total) else ""
        self.log.info("step %d  d_loss %.4f  g_loss %.4f  %.2f ms/step%s", step, stats.d_loss,
                      stats.g_loss, 1e3 * recent, eta)

    def _summary(self, steps: int, walls: list[float], metrics: dict[str, float]) -> None:
        warm = walls[self.cfg.run.warmup_steps:] or walls
        med = float(np.median(warm)) if warm else math.nan
        sent = self.world.comm.allreduce(self.comm.bytes_sent)
        self.log.info("done: %d steps, median %.2f ms/step (rank 0), %d bytes sent by all ranks -> %s",
                      steps, 1e3 * med, sent, self.cfg.run.out)


def train(cfg: RunConfig, world: World) -> Path:
    return Trainer(cfg, world).run()
