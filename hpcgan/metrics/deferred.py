"""Evaluations during training for ranks on their own clocks (pcwgan): scored alone, merged at the end.

Ranks that are not in lockstep must never wait for each other while training, and under
``--budget`` they stop at different steps, so no collective may run at an evaluation point. The
design (the simplest correct one):

1. Record, alone (:func:`record`). At every ``--eval-every`` steps of its own clock, a rank draws
   the indices its sampler gives it of an evaluation of ``--eval-samples`` (pcwgan: the samples of
   its own labels, :mod:`hpcgan.metrics.sampling`), computes the evaluator's additive statistics
   with a one-rank channel, and writes them into its own rows file (``RUN.h5.ckpt/rank{r}.steps.hdf5``)
   as ``/eval_stats/<step>/<model>/<name>``. Nothing is kept in memory; a step evaluated again after
   ``--resume`` replaces its entry.
2. Merge, together, once training ended (:func:`merge`, collective on the control channel): the
   steps that every rank evaluated, at most its last step and below the final step (the final
   evaluation covers that one), in order. Per step, the statistics are summed over ranks (their
   index sets partition the evaluation, so the sums are those of the whole model) and turned into
   metrics; rank 0 appends them to ``/eval``. A step some rank never reached (it stopped earlier
   under ``--budget``) is left out: the whole model never existed at that step.

A point at step t is the model after t steps of every rank's clock: with n_r labels on rank r,
each label's generator has had floor(t/n_r) or ceil(t/n_r) updates (/steps/g_updates counts them).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..comm.control import ControlChannel, control_of
from ..log import get_logger
from . import Evaluator, Stats, allreduce_stats
from .sampling import Sampler, SampleFn, as_sampler

GROUP = "eval_stats"


def _model(suffix: str) -> str:
    return suffix or "main"


def record(evaluator: Evaluator, samplers: dict[str, Sampler | SampleFn], n_total: int, step: int,
           rank: int, size: int, recorder) -> None:
    """Step 1: this rank's statistics of every model at ``step``, into ``recorder`` (its own rows
    file); no communication."""
    alone = ControlChannel.alone()
    for suffix, sample in samplers.items():
        sampler = as_sampler(sample)
        stats = evaluator.statistics(sampler, sampler.indices(n_total, rank, size), n_total, alone)
        for name, value in stats.items():
            recorder.write_array(f"{GROUP}/{step}/{_model(suffix)}/{name}", np.asarray(value, np.float64))


def recorded_steps(path: Path, last_step: int) -> list[int]:
    """The steps <= ``last_step`` with statistics in a rank's rows file."""
    with h5py.File(path, "r") as f:
        return sorted(int(s) for s in f.get(GROUP, {}) if int(s) <= last_step)


def _read(path: Path, step: int) -> dict[str, Stats]:
    with h5py.File(path, "r") as f:
        return {model: {name: ds[()] for name, ds in g.items()} for model, g in f[GROUP][str(step)].items()}


def merge(evaluator: Evaluator, path: Path, last_step: int, final_step: int, comm, recorder, samples: int) -> int:
    """Step 2, collective over ``comm``: the points every rank recorded in its rows file ``path``
    (this rank's, up to its ``last_step``) below ``final_step``, merged into ``/eval`` in order;
    returns how many."""
    comm = control_of(comm)
    mine = [s for s in recorded_steps(path, last_step) if s < final_step]
    common = sorted(set.intersection(*(set(steps) for steps in comm.allgather(mine))))
    for step in common:
        metrics: dict[str, float] = {}
        for model, stats in sorted(_read(path, step).items()):
            got = evaluator.metrics(allreduce_stats(stats, comm), comm)
            metrics.update({(k if model == "main" else f"{k}_{model}"): v for k, v in got.items()})
        recorder.record_series("eval", step, metrics, samples=samples, is_splits=evaluator.is_splits)
        get_logger().info("eval @ step %d (scored by every rank on its own clock): %s", step,
                          "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "_label" not in k))
    return len(common)
