"""Run configuration: frozen dataclasses, command-line flags generated from their fields.

Every field of a section becomes one flag (``gossip_rounds`` -> ``--gossip-rounds``; booleans get
``--x/--no-x``) and declares, where it is declared, what values it takes: a closed set of
``choices``, or numeric ``bounds`` (numbers must also be finite). Each section checks its fields
when it is built (:func:`check_fields`), so no configuration with a bad value exists anywhere, and
a numeric field without bounds is a programming error caught by the tests.

Compressors declare their own options (:mod:`hpcgan.compress.base`): ``CommConfig.compressor_options``
holds the value of every registered compressor's option (given or default), each flag of its own
(``--ratio``, ``--levels``) and each value checked against the compressor's declaration; the flags,
the ``--compressor`` choices and the routing below read the registry when they run, so a compressor
registered in its own module needs no edit here.

Field names (and compressor option names) are unique across sections, so a configuration can also be given as one flat mapping
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
from typing import Any, Callable, Iterable, Mapping

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


def opt(default: Any, help: str, choices: tuple[str, ...] | Callable[[], list[str]] | None = None,
        **bounds: float) -> Any:
    """A config field with its command-line help and what values it takes: ``choices`` (a closed
    set of names, or a function returning them: a registry's names) or ``bounds`` (``ge``, ``gt``,
    ``le``, ``lt``) for numbers."""
    return field(default=default, metadata={"help": help, "choices": choices, "bounds": Bounds(**bounds)})


def choices_of(meta: Mapping[str, Any]) -> tuple[str, ...] | None:
    choices = meta.get("choices")
    return tuple(choices()) if callable(choices) else choices


class FrozenMap(dict):
    """A mapping in a configuration: a dict (JSON, ``dataclasses.asdict``) that refuses changes."""

    def _frozen(self, *args, **kwargs):
        raise TypeError("configuration values are frozen")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _frozen

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.items())))

    def __reduce__(self):  # pickle and deepcopy rebuild it whole (a dict's items are set one by one)
        return FrozenMap, (dict(self),)


def compressor_names() -> list[str]:
    from .compress import COMPRESSORS  # at call time: the compressors import this module
    return COMPRESSORS.names()


def compressor_options() -> dict[str, tuple[type, dataclasses.Field, list[str]]]:
    """Every registered compressor's options: name -> (type, declaration, compressors using it)."""
    from .compress.base import declared_options  # at call time: the compressors import this module
    return declared_options()


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def problem(name: str, kind: type, value: Any, meta: Mapping[str, Any]) -> str | None:
    """Why ``value`` of the field ``name`` (of type ``kind``) is outside its declaration, or None."""
    if kind is bool:
        if not isinstance(value, bool):
            return f"{flag(name)} must be true or false, got {value!r}"
    elif kind in (int, float):
        if "bounds" not in meta or meta["bounds"] == Bounds():
            raise TypeError(f"numeric config field {name} declares no bounds")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            return f"{flag(name)} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        if not math.isfinite(value):
            return f"{flag(name)} must be finite, got {value}"
        if why := meta["bounds"].violated(value):
            return f"{flag(name)} {why}, got {value:g}"
    elif (choices := choices_of(meta)) and value not in choices:
        return f"{flag(name)} must be one of {', '.join(choices)}; got {value!r}"
    return None


def check_fields(section: Any) -> None:
    """UsageError naming every field of ``section`` whose value is outside its declaration."""
    hints = typing.get_type_hints(type(section))
    problems = [why for f in dataclasses.fields(section)
                if (why := problem(f.name, hints[f.name], getattr(section, f.name), f.metadata))]
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
    compressor: str = opt("identity", "compressor of the exchanged steps", compressor_names)
    compressor_options: Mapping[str, Any] = field(
        default_factory=FrozenMap, metadata={"help": "every registered compressor's options (each its own flag)"})
    error_feedback: bool = opt(True, "error feedback for compressed steps")
    granularity: str = opt("tensor", "what one compressor scale (or top-k budget) covers: each parameter tensor, "
                           "each network (G, D), or blocks of --block-size values", ("tensor", "network", "block"))
    block_size: int = opt(65536, "values per block with --granularity block", ge=1)
    bucket_mb: float = opt(25.0, "gradient bucket size [MiB] (as DDP's bucket_cap_mb): each bucket's exchange "
                           "starts from a gradient hook while backward goes on; 0 = one exchange after the "
                           "whole backward", ge=0, le=1024)
    backward_order: str = opt("dg", "which network's gradients the simultaneous step computes first, and so "
                              "which buckets leave first: dg = D's then G's (hides the most where comm ~ "
                              "compute), gd = G's then D's (hides more where comm is well below compute: "
                              "bench overlap says which, on your model); the same gradients either way",
                              ("dg", "gd"))
    net_latency: float = opt(0.0, "emulated latency alpha per message [s]", ge=0)
    net_bandwidth: float = opt(0.0, "emulated bandwidth B [bytes/s]; 0 = not emulated", ge=0)
    net_emulate: str = opt("account", "what the emulated network does: account = add each collective's modelled "
                           "time to t_net_emulated (nothing waits); delay = each collective also waits its "
                           "modelled time on the communication path, so overlap can be measured on one machine",
                           ("account", "delay"))
    cuda_aware_mpi: str = opt("auto", "backend mpi with CUDA tensors: yes = hand device memory to MPI, no = "
                              "stage through pinned host buffers, auto = yes when the MPI library reports "
                              "CUDA support", ("auto", "yes", "no"))

    def __post_init__(self) -> None:
        """Checks the fields, then completes ``compressor_options`` with the declared defaults and
        checks each given value against its compressor's declaration."""
        super().__post_init__()
        declared = compressor_options()
        given = dict(self.compressor_options)
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise UsageError(f"unknown compressor options {unknown}; declared: {', '.join(sorted(declared))}")
        values = {name: given.get(name, f.default) for name, (_, f, _) in sorted(declared.items())}
        problems = [why for name, (kind, f, _) in declared.items() if (why := problem(name, kind, values[name], f.metadata))]
        if problems:
            raise UsageError("; ".join(problems))
        object.__setattr__(self, "compressor_options", FrozenMap(values))


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
    budget: float = opt(0.0, "wall-clock seconds every rank trains, for every algorithm: P ranks spend P x SECONDS "
                        "rank-seconds (pcwgan: each rank's labels share its seconds); 0 = run --steps", ge=0)
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
        """Copy with some fields changed: ``cfg.replace(run={"steps": 10}, comm={"compressor": "topk",
        "ratio": 0.1})`` (compressor options by name, as flags give them)."""
        return dataclasses.replace(
            self, **{sec: dataclasses.replace(getattr(self, sec), **with_options(getattr(self, sec), kv))
                     for sec, kv in changes.items()}
        )

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "RunConfig":
        """The configuration with the fields named in ``values`` (flat ``{field: value}``), every
        other field at its declared default. Unknown names and bad values raise UsageError."""
        options = compressor_options()
        unknown = sorted(set(values) - set(SECTION_OF) - set(options))
        if unknown:
            raise UsageError(f"unknown config fields {unknown}")
        parts: dict[str, dict[str, Any]] = {sec: {} for sec in SECTIONS}
        for name, value in values.items():
            if name in options:
                parts["comm"].setdefault("compressor_options", {})[name] = value
            else:
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
        """The value of the field (or compressor option) ``name``."""
        if name in self.comm.compressor_options:
            return self.comm.compressor_options[name]
        return getattr(getattr(self, SECTION_OF[name]), name)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        raw = json.loads(text)
        unknown = set(raw) - set(SECTIONS)
        if unknown:
            raise UsageError(f"config has unknown sections {sorted(unknown)}")
        comm = raw.get("comm", {})
        legacy = {k: comm.pop(k) for k in list(comm) if k in compressor_options()}  # files before options moved
        if legacy:
            comm["compressor_options"] = {**legacy, **comm.get("compressor_options", {})}
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
            if f.name == "compressor_options":  # one flag per option, declared by the compressors
                for name, (kind, option, users) in sorted(compressor_options().items()):
                    if name not in exclude:
                        add_flag(group, name, kind, option, f"{option.metadata['help']} ({', '.join(users)})",
                                 defaults)
                continue
            add_flag(group, f.name, hints[f.name], f, f.metadata["help"], defaults)


def add_flag(group, name: str, kind: type, f: dataclasses.Field, help: str, defaults: dict[str, str] | None) -> None:
    extra = f"; {defaults[name]}" if defaults and name in defaults else ""
    kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": f"{help} (default: {f.default}{extra})"}
    if kind is bool:
        kw["action"] = argparse.BooleanOptionalAction
    else:
        kw["type"] = kind
        kw["metavar"] = name.upper()
        if choices := choices_of(f.metadata):
            kw["choices"] = choices
            if callable(f.metadata["choices"]):  # a registry's names: said in the help, which argparse does not
                kw["help"] = f"{help}: {', '.join(choices)} (default: {f.default}{extra})"
    group.add_argument(flag(name), **kw)


def flag_fields(names: Iterable[str]) -> set[str]:
    """``names`` of config fields as flags name them: ``compressor_options`` stands for every
    compressor option (``ratio``, ``levels``, ...)."""
    names = set(names)
    return names - {"compressor_options"} | (set(compressor_options()) if "compressor_options" in names else set())


def given_values(ns: argparse.Namespace) -> dict[str, Any]:
    """The config fields (and compressor options) the command line gave explicitly, as ``{field: value}``."""
    options = compressor_options()
    return {k: v for k, v in vars(ns).items() if k in SECTION_OF or k in options}


def with_options(section: Any, changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` to the section ``section`` with compressor options given by name moved into its
    ``compressor_options`` (the other options keep their values)."""
    options = {k: changes[k] for k in changes if k in compressor_options()}
    if not options:
        return changes
    rest = {k: v for k, v in changes.items() if k not in options}
    return {**rest, "compressor_options": {**section.compressor_options, **rest.get("compressor_options", {}),
                                           **options}}


def config_to_argv(cfg: RunConfig, fields: set[str] | None = None) -> list[str]:
    """The ``train`` flags that set ``fields`` (default: all; ``compressor_options`` stands for
    every compressor option) to their values in ``cfg``."""
    wanted = set(SECTION_OF) if fields is None else set(fields)
    if "compressor_options" in wanted:
        wanted |= set(cfg.comm.compressor_options)
    argv: list[str] = []
    for name in [*SECTION_OF, *cfg.comm.compressor_options]:
        if name not in wanted or name == "compressor_options":
            continue
        value = cfg.value(name)
        if isinstance(value, bool):
            argv.append(flag(name) if value else "--no-" + name.replace("_", "-"))
        else:
            argv += [flag(name), repr(value) if isinstance(value, float) else str(value)]
    return argv
