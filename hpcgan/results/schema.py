"""The results-file contract: StepStats, SCHEMA (HDF5 schema v3) and its validator.

``SCHEMA`` is the single source of truth for the writer (:mod:`hpcgan.results.recorder`), the validator
(:func:`validate`, ``hpcgan validate``) and the report. Layout of one results file::

    / attrs          schema_version, algorithm, backend, ... (SCHEMA.root_attrs); finished_at only
                     when the run ended normally
    /steps/<column>  (n_steps, world_size), row i = training step i, column r = rank r
    /eval/step, /eval/<metric>           (n_evals,)   attrs samples, is_splits of the evaluations
    /consensus/step, /consensus/distance (n,)   DPOSG
    /residual/step, /residual/{G,D}      (n,)   DQGAN: largest error-feedback residual norm over ranks
    /labels/owner    (n_labels,)                pcwgan: label -> rank
    /final_eval/<metric>  scalars                ``hpcgan eval`` of the run's final model (attrs
                     FINAL_EVAL_ATTRS: step, samples, IS splits, weights digest, ...)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import h5py
import numpy as np


@dataclass
class StepStats:
    """One rank's record of one training step (one row of /steps)."""

    step: int = -1
    wall: float = math.nan
    elapsed: float = math.nan
    t_compute: float = 0.0
    t_compress: float = 0.0
    t_comm: float = 0.0
    t_update: float = 0.0
    t_comm_hidden: float = 0.0
    t_net_emulated: float = 0.0
    cpu: float = 0.0
    bytes_sent: int = 0
    real_samples: int = 0
    fake_samples: int = 0
    d_loss: float = math.nan
    g_loss: float = math.nan

    def row(self) -> tuple:
        return tuple(self.__dict__.values())  # field order; asdict() deep-copies and is 30x slower


@dataclass(frozen=True)
class Column:
    name: str
    unit: str
    dtype: str
    doc: str

    @property
    def fill(self) -> float | int:
        """Value of a cell no rank wrote (a rank that stopped early): -1 for integers, NaN else."""
        return -1 if self.dtype == "i8" else math.nan


@dataclass(frozen=True)
class Schema:
    version: int
    root_attrs: dict[str, type]
    optional_attrs: dict[str, type]
    step_columns: tuple[Column, ...]
    series: dict[str, tuple[str, ...]] = field(default_factory=dict)
    final_eval_attrs: dict[str, type] = field(default_factory=dict)

    def column(self, name: str) -> Column:
        return next(c for c in self.step_columns if c.name == name)


SCHEMA = Schema(
    version=4,  # 2: /steps/cpu; 3: /steps/{real,fake}_samples, ranks_json, /final_eval; 4: /steps/t_comm_hidden
    root_attrs={
        "schema_version": int, "algorithm": str, "backend": str, "compressor": str, "topology": str,
        "spectral_gap": float, "world_size": int, "scaling": str, "local_batch": int,
        "global_batch": int, "warmup_steps": int, "config_json": str, "versions_json": str,
        "machine": str, "hostnames": str, "ranks_json": str, "slurm_job_id": str, "started_at": str,
    },
    optional_attrs={"finished_at": str, "stopped_reason": str},
    step_columns=(
        Column("step", "", "i8", "training iteration index"),
        Column("wall", "s", "f8", "wall time of the whole iteration on this rank (data included)"),
        Column("elapsed", "s", "f8", "seconds since training started, at the end of the step"),
        Column("t_compute", "s", "f8", "forward/backward: the stochastic gradient F(x; xi)"),
        Column("t_compress", "s", "f8", "compression, decompression and error feedback"),
        Column("t_comm", "s", "f8", "communication the step waited for (exposed): collectives, neighbour exchange"),
        Column("t_update", "s", "f8", "optimizer arithmetic and parameter writes"),
        Column("t_comm_hidden", "s", "f8", "communication that ran behind the step's compute (bucketed "
               "exchanges on the transport worker); not part of the step's wall time"),
        Column("t_net_emulated", "s", "f8", "--net-emulate account: modelled network time (never inside t_comm)"),
        Column("cpu", "s", "f8", "process CPU time of the step outside collectives (work, not waiting)"),
        Column("bytes_sent", "B", "i8", "bytes this rank handed to the transport"),
        Column("real_samples", "samples", "i8", "real data samples this rank's step consumed (all critic "
               "and generator updates of the step)"),
        Column("fake_samples", "samples", "i8", "generator samples this rank's step drew"),
        Column("d_loss", "", "f8", "discriminator / critic loss on the local batch"),
        Column("g_loss", "", "f8", "generator loss on the local batch"),
    ),
    series={"eval": ("step",), "consensus": ("step", "distance"), "residual": ("step", "G", "D")},
    final_eval_attrs={"step": int, "samples": int, "is_splits": int, "eval_ranks": int, "weights_sha256": str,
                      "model": str, "extractors_json": str, "evaluated_at": str},
)
#: root attribute ``ranks_json``: a JSON list, one object per rank with these keys
RANK_KEYS = ("rank", "local_rank", "host", "device", "threads", "cpu_affinity")

assert tuple(c.name for c in SCHEMA.step_columns) == tuple(StepStats.__dataclass_fields__), \
    "StepStats and SCHEMA.step_columns must list the same columns in the same order"


def validate(path: str) -> list[str]:
    """Problems found in a results file against SCHEMA (an empty list means valid)."""
    problems: list[str] = []
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        return [f"cannot open {path}: {e}"]
    with f:
        attrs = dict(f.attrs)
        if attrs.get("schema_version") != SCHEMA.version:
            problems.append(f"schema_version is {attrs.get('schema_version')!r}, expected {SCHEMA.version}")
        for name, kind in {**SCHEMA.root_attrs, **SCHEMA.optional_attrs}.items():
            if name not in attrs:
                if name in SCHEMA.root_attrs:
                    problems.append(f"missing root attribute '{name}'")
                continue
            if not _is_kind(attrs[name], kind):
                problems.append(f"root attribute '{name}' should be {kind.__name__}, is {type(attrs[name]).__name__}")
        for name in ("config_json", "versions_json", "ranks_json"):
            try:
                json.loads(attrs.get(name, ""))
            except (TypeError, ValueError):
                problems.append(f"root attribute '{name}' is not JSON")
        world = attrs.get("world_size")
        problems += _check_steps(f, world)
        for group, required in SCHEMA.series.items():
            problems += _check_series(f, group, required)
        problems += _check_ranks(attrs.get("ranks_json"), world)
        problems += _check_final_eval(f)
    return problems


def _is_kind(value: object, kind: type) -> bool:
    if kind is int:
        return isinstance(value, (int, np.integer))
    if kind is float:
        return isinstance(value, (float, int, np.floating, np.integer))
    return isinstance(value, (str, bytes))


def _check_steps(f: h5py.File, world: object) -> list[str]:
    if "steps" not in f:
        return ["missing group /steps"]
    problems, rows = [], set()
    for col in SCHEMA.step_columns:
        if col.name not in f["steps"]:
            problems.append(f"missing /steps/{col.name}")
            continue
        ds = f["steps"][col.name]
        if ds.ndim != 2 or (isinstance(world, (int, np.integer)) and ds.shape[1] != world):
            problems.append(f"/steps/{col.name} has shape {ds.shape}, expected (n_steps, {world})")
        if ds.dtype != np.dtype(col.dtype):
            problems.append(f"/steps/{col.name} has dtype {ds.dtype}, expected {col.dtype}")
        if ds.attrs.get("unit") != col.unit:
            problems.append(f"/steps/{col.name} lacks unit attribute '{col.unit}'")
        rows.add(ds.shape[0])
    if len(rows) > 1:
        problems.append(f"/steps columns have different lengths {sorted(rows)}")
    if "step" in f["steps"] and not problems:
        steps = f["steps"]["step"][()]
        written = steps >= 0
        expected = np.broadcast_to(np.arange(steps.shape[0])[:, None], steps.shape)
        if not np.array_equal(steps[written], expected[written]):
            problems.append("/steps/step does not match the row index")
    return problems


def _check_series(f: h5py.File, group: str, required: tuple[str, ...]) -> list[str]:
    if group not in f:
        return []
    g, problems = f[group], []
    for name in required:
        if name not in g:
            problems.append(f"missing /{group}/{name}")
    if "step" in g:
        n = g["step"].shape[0]
        for name, ds in g.items():
            if ds.ndim != 1 or ds.shape[0] != n:
                problems.append(f"/{group}/{name} has shape {ds.shape}, expected ({n},)")
    return problems


def _check_ranks(text: object, world: object) -> list[str]:
    try:
        ranks = json.loads(text)
    except (TypeError, ValueError):
        return []  # reported with the other JSON attributes
    if not isinstance(ranks, list) or (isinstance(world, (int, np.integer)) and len(ranks) != world):
        return [f"root attribute 'ranks_json' should list {world} ranks"]
    missing = sorted({k for r in ranks for k in RANK_KEYS if not isinstance(r, dict) or k not in r})
    return [f"root attribute 'ranks_json' lacks {', '.join(missing)}"] if missing else []


def _check_final_eval(f: h5py.File) -> list[str]:
    if "final_eval" not in f:
        return []
    g, problems = f["final_eval"], []
    for name, kind in SCHEMA.final_eval_attrs.items():
        if name not in g.attrs:
            problems.append(f"/final_eval lacks attribute '{name}'")
        elif not _is_kind(g.attrs[name], kind):
            problems.append(f"/final_eval attribute '{name}' should be {kind.__name__}")
    for name, ds in g.items():
        if not isinstance(ds, h5py.Dataset) or ds.shape != () or ds.dtype != np.float64:
            problems.append(f"/final_eval/{name} should be a float64 scalar")
    return problems
