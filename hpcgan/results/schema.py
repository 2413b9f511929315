"""The results-file contract: StepStats, SCHEMA (HDF5 schema v3) and its validator.

``SCHEMA`` is the single source of truth for the writer (:mod:`hpcgan.results.recorder`), the validator
(:func:`validate`, ``hpcgan validate``) and the report. Layout of one results file::

    / attrs          schema_version, algorithm, backend, ... (SCHEMA.root_attrs); finished_at only
                     when the run ended normally
    /steps/<column>  (n_steps, world_size), row i = training step i, column r = rank r
    /eval/step, /eval/<metric>           (n_evals,)   attrs samples, is_splits of the evaluations
    /consensus/step, /consensus/distance (n,)   DPOSG
    /residual/step, /residual/{G,D}      (n,)   DQGAN: largest error-feedback residual norm over ranks
    /labels/owner    (n_labels,)                pcwgan: label -> rank; also steps, g_updates, d_updates
                     per label's kept generator
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
    g_updates: int = 0
    d_updates: int = 0
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
    version=5,  # 2: /steps/cpu; 3: /steps/{real,fake}_samples, ranks_json, /final_eval; 4: /steps/t_comm_hidden,
    #             the run identity (run_id, config_digest, seed); 5: /steps/{g,d}_updates
    root_attrs={
        "schema_version": int, "algorithm": str, "backend": str, "compressor": str, "topology": str,
        "spectral_gap": float, "world_size": int, "scaling": str, "local_batch": int,
        "global_batch": int, "warmup_steps": int, "config_json": str, "versions_json": str,
        "machine": str, "hostnames": str, "ranks_json": str, "slurm_job_id": str, "started_at": str,
        "run_id": str, "config_digest": str, "seed": int,  # the run's identity, also in its checkpoints
    },
    optional_attrs={"finished_at": str, "stopped_reason": str},
    step_columns=(
        Column("step", "", "i8", "training iteration index"),
        Column("wall", "s", "f8", "wall time of the whole iteration on this rank (data included)"),
        Column("elapsed", "s", "f8", "training seconds at the end of the step (evaluations during training "
               "left out: the clock of --budget)"),
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
        Column("g_updates", "", "i8", "generator updates the step applied to the model this rank trains "
               "(pcwgan: to the label's generator it trained; per label: /labels/g_updates)"),
        Column("d_updates", "", "i8", "critic/discriminator updates the step applied (n_critic for cwgan, pcwgan)"),
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


#: Root attributes and step columns every reader of a results file needs (all schema versions have them).
READ_ATTRS = ("algorithm", "world_size", "scaling", "local_batch", "global_batch")
READ_COLUMNS = ("step", "wall", "t_compute", "t_compress", "t_comm", "t_update", "t_net_emulated", "bytes_sent")
#: Settings of config_json that readers use, with their types.
CONFIG_READ = {("data", "data"): str, ("data", "labels"): int, ("run", "seed"): int, ("run", "eval_samples"): int}
#: Rows of /steps/step read at a time when checking the row index (bounded memory on any file).
CHECK_ROWS = 1 << 20


def validate(path: str) -> list[str]:
    """Problems found in a results file against SCHEMA (an empty list means valid). The layout is
    checked first without reading any data (:func:`layout_problems`); only a sound layout has its
    row index read, ``CHECK_ROWS`` rows at a time, so no file makes this allocate more than that."""
    try:
        f = h5py.File(path, "r")
    except Exception as e:  # OSError; ValueError/RuntimeError for some damaged superblocks
        return [f"cannot open {path}: {first_line(e)}"]
    with f:
        try:
            problems = layout_problems(f, strict=True)
            if not problems:
                problems += _check_row_index(f["steps"]["step"])
        except Exception as e:  # HDF5 meets damage below the layout (a truncated file): one line
            problems = [f"cannot read {path}: {first_line(e)}"]
    return problems


def layout_problems(f: h5py.File, strict: bool) -> list[str]:
    """Problems in the layout of an open results file that can be seen without reading its data:
    attribute types and JSON, the groups, shapes and dtypes of datasets, and datasets that declare
    more rows than the file stores (resized beyond their data). ``strict`` (validate): every
    SCHEMA attribute and column must be there; else (readers) only READ_ATTRS and READ_COLUMNS,
    and whatever else is there must be sound."""
    attrs = {k: f.attrs[k] for k in f.attrs}
    problems: list[str] = []
    if strict and attrs.get("schema_version") != SCHEMA.version:
        problems.append(f"schema_version is {attrs.get('schema_version')!r}, expected {SCHEMA.version}")
    for name, kind in {**SCHEMA.root_attrs, **SCHEMA.optional_attrs}.items():
        if name not in attrs:
            if name in SCHEMA.root_attrs and (strict or name in READ_ATTRS):
                problems.append(f"missing root attribute '{name}'")
        elif not _is_kind(attrs[name], kind):
            problems.append(f"root attribute '{name}' should be {kind.__name__}, is {type(attrs[name]).__name__}")
    world = attrs.get("world_size")
    if _is_kind(world, int) and world < 1:
        problems.append(f"root attribute 'world_size' is {world}, expected at least 1")
    for name, shape in (("config_json", dict), ("versions_json", dict), ("ranks_json", list)):
        if name in attrs or strict:
            try:
                if not isinstance(json.loads(attrs.get(name, "")), shape):
                    problems.append(f"root attribute '{name}' should be a JSON {shape.__name__}")
            except (TypeError, ValueError):
                problems.append(f"root attribute '{name}' is not JSON")
    if "config_json" in attrs and not problems:
        sections = json.loads(attrs["config_json"])
        if not all(isinstance(v, dict) for v in sections.values()):
            problems.append("root attribute 'config_json' should map sections to settings")
        else:
            problems += [f"root attribute 'config_json' has {sec}.{key} of type {type(sections[sec][key]).__name__}, "
                         f"expected {kind.__name__}" for (sec, key), kind in CONFIG_READ.items()
                         if key in sections.get(sec, {}) and not _is_kind(sections[sec][key], kind)]
    world = world if _is_kind(world, int) else None
    problems += _check_steps(f, world, strict)
    for group, required in SCHEMA.series.items():
        problems += _check_series(f, group, required)
    if "ranks_json" in attrs:
        problems += _check_ranks(attrs["ranks_json"], world, strict)
    problems += _check_final_eval(f)
    return problems


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _is_kind(value: object, kind: type) -> bool:
    if kind is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if kind is float:
        return isinstance(value, (float, int, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))
    return isinstance(value, (str, bytes))


def stored_problem(ds: h5py.Dataset, name: str) -> str | None:
    """Why ``ds`` cannot be what it declares: it needs more bytes than the file stores for it
    (a dataset resized beyond the data written: reading it would allocate the declared size)."""
    if ds.id.get_create_plist().get_nfilters():  # compressed: stored size says nothing; see readers' bound
        return None
    need = int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize
    stored = ds.id.get_storage_size()
    if need > stored:
        return f"{name} declares shape {ds.shape} ({need} bytes) but the file stores {stored} bytes of it"
    return None


def _check_steps(f: h5py.File, world: int | None, strict: bool) -> list[str]:
    if not isinstance(f.get("steps"), h5py.Group):
        return ["missing group /steps"]
    steps, problems, rows = f["steps"], [], set()
    for name in steps:
        ds = steps.get(name)
        if not isinstance(ds, h5py.Dataset):
            problems.append(f"/steps/{name} is not a dataset")
            continue
        col = next((c for c in SCHEMA.step_columns if c.name == name), None)
        if ds.ndim != 2 or (world is not None and ds.shape[1] != world):
            problems.append(f"/steps/{name} has shape {ds.shape}, expected (n_steps, {world})")
            continue
        if col is not None and ds.dtype != np.dtype(col.dtype) or ds.dtype.kind not in "iuf":
            problems.append(f"/steps/{name} has dtype {ds.dtype}, expected {col.dtype if col else 'numbers'}")
        if strict and col is not None and ds.attrs.get("unit") != col.unit:
            problems.append(f"/steps/{name} lacks unit attribute '{col.unit}'")
        problems += filter(None, [stored_problem(ds, f"/steps/{name}")])
        rows.add(ds.shape[0])
    for col in SCHEMA.step_columns:
        if col.name not in steps and (strict or col.name in READ_COLUMNS):
            problems.append(f"missing /steps/{col.name}")
    if len(rows) > 1:
        problems.append(f"/steps columns have different lengths {sorted(rows)}")
    return problems


def _check_row_index(ds: h5py.Dataset) -> list[str]:
    """/steps/step[i] is i wherever a rank wrote it (-1 where it did not), read in bounded chunks."""
    for lo in range(0, ds.shape[0], CHECK_ROWS):
        steps = ds[lo:lo + CHECK_ROWS]
        expected = np.broadcast_to(np.arange(lo, lo + steps.shape[0])[:, None], steps.shape)
        written = steps >= 0
        if not np.array_equal(steps[written], expected[written]):
            return ["/steps/step does not match the row index"]
    return []


def _check_series(f: h5py.File, group: str, required: tuple[str, ...]) -> list[str]:
    if group not in f:
        return []
    g = f[group]
    if not isinstance(g, h5py.Group):
        return [f"/{group} is not a group"]
    problems = [f"missing /{group}/{name}" for name in required if name not in g]
    n = g["step"].shape[0] if isinstance(g.get("step"), h5py.Dataset) and g["step"].ndim == 1 else None
    for name in g:
        ds = g.get(name)
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or (n is not None and ds.shape[0] != n) \
                or ds.dtype.kind not in "iuf":
            shape = ds.shape if isinstance(ds, h5py.Dataset) else "a group"
            problems.append(f"/{group}/{name} has shape {shape}, expected numbers of shape ({n},)")
            continue
        problems += filter(None, [stored_problem(ds, f"/{group}/{name}")])
    for name, kind in (("samples", int), ("is_splits", int)):
        if name in g.attrs and not _is_kind(g.attrs[name], kind):
            problems.append(f"/{group} attribute '{name}' should be {kind.__name__}")
    return problems


def _check_ranks(text: object, world: int | None, strict: bool) -> list[str]:
    try:
        ranks = json.loads(text)
    except (TypeError, ValueError):
        return []  # reported with the other JSON attributes
    if not isinstance(ranks, list) or (world is not None and len(ranks) != world):
        return [f"root attribute 'ranks_json' should list {world} ranks"]
    if not all(isinstance(r, dict) for r in ranks):
        return ["root attribute 'ranks_json' should list one object per rank"]
    missing = sorted({k for r in ranks for k in RANK_KEYS if k not in r}) if strict else []
    if missing:
        return [f"root attribute 'ranks_json' lacks {', '.join(missing)}"]
    if any(not _is_kind(r.get("threads", 1), int) for r in ranks):
        return ["root attribute 'ranks_json' has a rank whose threads is not an integer"]
    return []


def _check_final_eval(f: h5py.File) -> list[str]:
    if "final_eval" not in f:
        return []
    g = f["final_eval"]
    if not isinstance(g, h5py.Group):
        return ["/final_eval is not a group"]
    problems = []
    for name, kind in SCHEMA.final_eval_attrs.items():
        if name not in g.attrs:
            problems.append(f"/final_eval lacks attribute '{name}'")
        elif not _is_kind(g.attrs[name], kind):
            problems.append(f"/final_eval attribute '{name}' should be {kind.__name__}")
    for name in g:
        ds = g.get(name)
        if not isinstance(ds, h5py.Dataset) or ds.shape != () or ds.dtype != np.float64:
            problems.append(f"/final_eval/{name} should be a float64 scalar")
    return problems
