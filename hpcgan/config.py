"""Run configuration: frozen dataclasses, command-line flags generated from their fields.

Every field of a section becomes one flag (``gossip_rounds`` -> ``--gossip-rounds``; booleans get
``--x/--no-x``) and declares, where it is declared, what values it takes: a closed set of
``choices``, or numeric ``bounds`` (numbers must also be finite). Each section checks its fields
when it is built (:func:`check_fields`), so no configuration with a bad value exists anywhere, and
a numeric field without bounds is a programming error caught by the tests.

Field names are unique across sections, so a configuration can also be given as one flat mapping
``{field name: value}`` (:meth:`RunConfig.from_values`): that is how an algorithm's own defaults
(:class:`hpcgan.algorithms.Algorithm`) are laid under the flags the user gave. The whole
:class:`RunConfig` is stored as JSON in every results file and hashed at start-up so that ranks
launched with different arguments refuse to run together.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError


@dataclass(frozen=True)
class Bounds:
    """Allowed range of a numeric field: ge <= x <= le, gt < x < lt (None = unbounded)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def violated(self, x: float) -> str | None:
        """Why ``x`` is out of range, or None."""
        for bound, ok, word in ((self.ge, lambda b: x >= b, ">="), (self.gt, lambda b: x > b, ">"),
                                (self.le, lambda b: x <= b, "<="), (self.lt, lambda b: x < b, "<")):
            if bound is not None and not ok(bound):
                return f"must be {word} {bound:g}"
        return None


def opt(default: Any, help: str, choices: tuple[str, ...] | None = None, **bounds: float) -> Any:
    """A config field with its command-line help and what values it takes: ``choices`` (a closed
    set of names) or ``bounds`` (``ge``, ``gt``, ``le``, ``lt``) for numbers."""
    return field(default=default, metadata={"help": help, "choices": choices, "bounds": Bounds(**bounds)})


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_fields(section: Any) -> None:
    """UsageError naming every field of ``section`` whose value is outside its declaration."""
    problems = []
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        value, kind, meta = getattr(section, f.name), hints[f.name], f.metadata
        if kind is bool:
            if not isinstance(value, bool):
                problems.append(f"{flag(f.name)} must be true or false, got {value!r}")
        elif kind in (int, float):
            if "bounds" not in meta or meta["bounds"] == Bounds():
                raise TypeError(f"numeric config field {f.name} declares no bounds")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
                problems.append(f"{flag(f.name)} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
            elif not math.isfinite(value):
                problems.append(f"{flag(f.name)} must be finite, got {value}")
            elif why := meta["bounds"].violated(value):
                problems.append(f"{flag(f.name)} {why}, got {value:g}")
        elif meta.get("choices") and value not in meta["choices"]:
            problems.append(f"{flag(f.name)} must be one of {', '.join(meta['choices'])}; got {value!r}")
    if problems:
        raise UsageError("; ".join(problems))


class Section:
    """Base of the config sections: fields are checked when a section is built."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class DataConfig(Section):
    data: str = opt("mog8", "dataset: mog8, mog25, digits or h5:PATH")
    batch_size: int = opt(64, "local (per-rank) minibatch size b", ge=1)
    shard: str = opt("even", "how image datasets are split over ranks", ("even", "uneven"))
    labels: int = opt(0, "use only the first K labels of the dataset; 0 = all", ge=0)


@dataclass(frozen=True)
class ModelConfig(Section):
    model: str = opt("mlp", "generator/discriminator pair: mlp, dcgan32, dcgan64, resnet32")
    z_dim: int = opt(64, "latent dimension of the generator", ge=1)
    width: int = opt(128, "hidden width (MLP units / base conv channels)", ge=1)
    loss: str = opt("ns", "GAN loss: ns (non-saturating BCE), wgan-gp, wgan-clip (critic weights clipped "
                    "to [-0.01, 0.01]; alternating algorithms only)")
    gp_weight: float = opt(10.0, "gradient-penalty weight lambda of wgan-gp", ge=0)


@dataclass(frozen=True)
class OptimConfig(Section):
    optimizer: str = opt("adam", "local update rule: adam, omd, oadam (the algorithm sets its default and "
                         "which it accepts)")
    lr: float = opt(1e-3, "learning rate eta", ge=0)
    beta1: float = opt(0.5, "Adam beta1", ge=0, lt=1)
    beta2: float = opt(0.999, "Adam beta2", ge=0, lt=1)
    eps: float = opt(1e-8, "Adam epsilon", gt=0)
    n_critic: int = opt(5, "critic steps per generator step", ge=1)


@dataclass(frozen=True)
class CommConfig(Section):
    backend: str = opt("mpi", "communication backend: mpi, torch, horovod")
    compressor: str = opt("identity", "compressor of the exchanged steps: identity, fp16, bf16, sign, topk, "
                          "topk-torch, randk, qsgd, powersgd")
    ratio: float = opt(0.01, "fraction of coordinates kept by topk / randk", gt=0, le=1)
    levels: int = opt(16, "QSGD quantization levels s", ge=1)
    error_feedback: bool = opt(True, "error feedback for compressed steps")
    granularity: str = opt("tensor", "what one compressor scale (or top-k budget) covers: each parameter tensor, "
                           "each network (G, D), or blocks of --block-size values", ("tensor", "network", "block"))
    block_size: int = opt(65536, "values per block with --granularity block", ge=1)
    net_latency: float = opt(0.0, "emulated latency alpha per message [s]", ge=0)
    net_bandwidth: float = opt(0.0, "emulated bandwidth B [bytes/s]; 0 = not emulated", ge=0)
    cuda_aware_mpi: str = opt("auto", "backend mpi with CUDA tensors: yes = hand device memory to MPI, no = "
                              "stage through pinned host buffers, auto = yes when the MPI library reports "
                              "CUDA support", ("auto", "yes", "no"))


@dataclass(frozen=True)
class AlgoConfig(Section):
    algo: str = opt("sync", "training algorithm: sync, dqgan, dposg, pcwgan, cwgan")
    dqgan_variant: str = opt("A", "where DQGAN extrapolates (docs/ALGORITHMS.md section 1): A = in the "
                             "compressed message, B = after averaging", ("A", "B"))
    topology: str = opt("ring", "gossip graph: ring, torus, exp2, complete, identity or a W file")
    gossip_rounds: int = opt(1, "gossip rounds t per iteration", ge=1)
    consensus_every: int = opt(10, "record the consensus distance every k steps", ge=1)
    replicas: int = opt(1, "independent seeds per label (allows ranks > labels)", ge=1)


@dataclass(frozen=True)
class RunSettings(Section):
    steps: int = opt(1000, "training iterations (ignored when --budget is set)", ge=1)
    budget: float = opt(0.0, "wall-clock budget in seconds; 0 = run --steps", ge=0)
    warmup_steps: int = opt(5, "leading steps that reports exclude from timings", ge=0)
    seed: int = opt(0, "base seed; rank r derives its own streams from (seed, r)", ge=0)
    scaling: str = opt("none", "scaling study this run belongs to", ("none", "weak", "strong"))
    out: str = opt("results/run.h5", "results file (HDF5, hpcgan.results.schema); the final model goes to OUT.model/")
    force: bool = opt(False, "overwrite an existing results file")
    resume: bool = opt(False, "continue from the checkpoint next to --out")
    flush_every: int = opt(50, "gather and append step rows to the results file every N steps", ge=1)
    log_every: int = opt(100, "progress line every N steps (rank 0)", ge=1)
    eval_every: int = opt(0, "evaluate quality every N steps (0 = only at the end)", ge=0)
    eval_samples: int = opt(2500, "samples drawn for each quality evaluation", ge=1)
    ckpt_every: int = opt(0, "checkpoint every N steps (0 = never)", ge=0)
    device: str = opt("auto", "where ranks compute: cuda (refuse to start without a usable GPU), cpu, or auto "
                      "(a GPU when CUDA works, else the CPU with a warning where GPUs were expected)",
                      ("auto", "cuda", "cpu"))


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "comm": CommConfig,
    "algo": AlgoConfig,
    "run": RunSettings,
}
#: field name -> its section (field names are unique across sections)
SECTION_OF = {f.name: sec for sec, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
assert len(SECTION_OF) == sum(len(dataclasses.fields(c)) for c in SECTIONS.values()), "field names must be unique"


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    comm: CommConfig = field(default_factory=CommConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    run: RunSettings = field(default_factory=RunSettings)

    def replace(self, **changes: dict[str, Any]) -> "RunConfig":
        """Copy with some fields changed: ``cfg.replace(run={"steps": 10}, comm={"compressor": "sign"})``."""
        return dataclasses.replace(
            self, **{sec: dataclasses.replace(getattr(self, sec), **kv) for sec, kv in changes.items()}
        )

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "RunConfig":
        """The configuration with the fields named in ``values`` (flat ``{field: value}``), every
        other field at its declared default. Unknown names and bad values raise UsageError."""
        unknown = sorted(set(values) - set(SECTION_OF))
        if unknown:
            raise UsageError(f"unknown config fields {unknown}")
        parts: dict[str, dict[str, Any]] = {sec: {} for sec in SECTIONS}
        for name, value in values.items():
            parts[SECTION_OF[name]][name] = value
        built, problems = {}, []
        for sec, kv in parts.items():
            try:
                built[sec] = SECTIONS[sec](**kv)
            except UsageError as e:
                problems.append(str(e))
        if problems:
            raise UsageError("; ".join(problems))
        return cls(**built)

    def value(self, name: str) -> Any:
        return getattr(getattr(self, SECTION_OF[name]), name)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        raw = json.loads(text)
        unknown = set(raw) - set(SECTIONS)
        if unknown:
            raise UsageError(f"config has unknown sections {sorted(unknown)}")
        try:
            return cls(**{sec: SECTIONS[sec](**raw.get(sec, {})) for sec in SECTIONS})
        except TypeError as e:
            raise UsageError(f"config does not match this hpcgan version: {e}") from None

    def digest(self) -> str:
        """SHA-256 of the canonical JSON; ranks compare it at start-up."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def add_config_arguments(parser: argparse.ArgumentParser, exclude: frozenset[str] = frozenset(),
                         defaults: dict[str, str] | None = None) -> None:
    """One flag per field of every section, grouped by section in ``--help``.

    Flags the user does not give are absent from the namespace (:func:`given_values`), so that the
    chosen algorithm's defaults can apply. ``exclude`` names fields (e.g. ``{"out", "scaling"}``) a
    command sets itself. ``defaults`` are texts shown after the declared default in ``--help``.
    """
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(section)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in exclude:
                continue
            kind = hints[f.name]
            extra = f"; {defaults[f.name]}" if defaults and f.name in defaults else ""
            kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                                  "help": f"{f.metadata['help']} (default: {f.default}{extra})"}
            if kind is bool:
                kw["action"] = argparse.BooleanOptionalAction
            else:
                kw["type"] = kind
                kw["metavar"] = f.name.upper()
                if f.metadata.get("choices"):
                    kw["choices"] = f.metadata["choices"]
            group.add_argument(flag(f.name), **kw)


def given_values(ns: argparse.Namespace) -> dict[str, Any]:
    """The config fields the command line gave explicitly, as ``{field: value}``."""
    return {k: v for k, v in vars(ns).items() if k in SECTION_OF}


def config_to_argv(cfg: RunConfig, fields: set[str] | None = None) -> list[str]:
    """The ``train`` flags that set ``fields`` (default: all) to their values in ``cfg``."""
    argv: list[str] = []
    for name in SECTION_OF:
        if fields is not None and name not in fields:
            continue
        value = cfg.value(name)
        if isinstance(value, bool):
            argv.append(flag(name) if value else "--no-" + name.replace("_", "-"))
        else:
            argv += [flag(name), repr(value) if isinstance(value, float) else str(value)]
    return argv
