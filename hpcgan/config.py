"""Run configuration: frozen dataclasses, command-line flags generated from their fields.

Every field of a section becomes one flag (``gossip_rounds`` -> ``--gossip-rounds``; booleans get
``--x/--no-x``). The whole :class:`RunConfig` is stored as JSON in every results file and hashed at
start-up so that ranks launched with different arguments refuse to run together.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError


def opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A config field with its command-line help (and fixed choices, where the set is closed)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class DataConfig:
    data: str = opt("mog8", "dataset: mog8, mog25, digits or h5:PATH")
    batch_size: int = opt(64, "local (per-rank) minibatch size b")
    shard: str = opt("even", "how image datasets are split over ranks", ("even", "uneven"))
    labels: int = opt(0, "use only the first K labels of the dataset; 0 = all")


@dataclass(frozen=True)
class ModelConfig:
    model: str = opt("mlp", "generator/discriminator pair (see `hpcgan train --help-models`)")
    z_dim: int = opt(64, "latent dimension of the generator")
    width: int = opt(128, "hidden width (MLP units / base conv channels)")
    loss: str = opt("ns", "GAN loss: ns (non-saturating) or wgan-gp")
    gp_weight: float = opt(10.0, "gradient-penalty weight lambda for wgan-gp")


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = opt("adam", "local update rule: adam, omd, oadam (algorithms may restrict)")
    lr: float = opt(1e-3, "learning rate eta")
    beta1: float = opt(0.5, "Adam beta1")
    beta2: float = opt(0.999, "Adam beta2")
    eps: float = opt(1e-8, "Adam epsilon")
    n_critic: int = opt(5, "critic steps per generator step (pcwgan / cwgan)")


@dataclass(frozen=True)
class CommConfig:
    backend: str = opt("mpi", "communication backend: mpi, torch, horovod")
    compressor: str = opt("identity", "gradient compressor (dqgan): identity, fp16, bf16, sign, topk, randk, qsgd")
    ratio: float = opt(0.01, "fraction of coordinates kept by topk / randk, in (0, 1]")
    levels: int = opt(16, "QSGD quantization levels s")
    error_feedback: bool = opt(True, "error feedback for compressed gradients")
    net_latency: float = opt(0.0, "emulated latency alpha per message [s]")
    net_bandwidth: float = opt(0.0, "emulated bandwidth B [bytes/s]; 0 = not emulated")


@dataclass(frozen=True)
class AlgoConfig:
    algo: str = opt("sync", "training algorithm: sync, dqgan, dposg, pcwgan, cwgan")
    dqgan_variant: str = opt("A", "DQGAN variant (ALGORITHMS.md section 1)", ("A", "B"))
    topology: str = opt("ring", "DPOSG mixing graph: ring, torus, exp2, complete, identity or a W file")
    gossip_rounds: int = opt(1, "DPOSG gossip rounds t per iteration")
    consensus_every: int = opt(10, "DPOSG: record the consensus distance every k steps")
    replicas: int = opt(1, "pcwgan: independent seeds per label (allows ranks > labels)")
    wgan_variant: str = opt("gp", "pcwgan/cwgan critic: gp (WGAN-GP), clip (weight clipping c=0.01), "
                            "bce (the predecessor's DC-CGAN loss)", ("gp", "clip", "bce"))


@dataclass(frozen=True)
class RunSettings:
    steps: int = opt(1000, "training iterations (ignored when --budget is set)")
    budget: float = opt(0.0, "wall-clock budget in seconds; 0 = run --steps")
    warmup_steps: int = opt(5, "leading steps that reports exclude from timings")
    seed: int = opt(0, "base seed; rank r derives its own streams from (seed, r)")
    scaling: str = opt("none", "scaling study this run belongs to", ("none", "weak", "strong"))
    out: str = opt("results/run.h5", "results file (HDF5 schema v1)")
    force: bool = opt(False, "overwrite an existing results file")
    resume: bool = opt(False, "continue from the checkpoint next to --out")
    flush_every: int = opt(50, "gather and append step rows to the results file every N steps")
    log_every: int = opt(100, "progress line every N steps (rank 0)")
    eval_every: int = opt(0, "evaluate quality every N steps (0 = only at the end)")
    eval_samples: int = opt(2500, "samples drawn for each quality evaluation")
    ckpt_every: int = opt(0, "checkpoint every N steps (0 = never)")


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "comm": CommConfig,
    "algo": AlgoConfig,
    "run": RunSettings,
}


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


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, exclude: frozenset[str] = frozenset()) -> None:
    """One flag per field of every section, grouped by section in ``--help``.

    ``exclude`` names fields (e.g. ``{"out", "scaling"}``) a command sets itself; they keep their defaults.
    """
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(section)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in exclude:
                continue
            kind = hints[f.name]
            kw: dict[str, Any] = {"dest": f"{section}.{f.name}", "default": f.default}
            kw["help"] = f"{f.metadata['help']} (default: {f.default})"
            if kind is bool:
                kw["action"] = argparse.BooleanOptionalAction
            else:
                kw["type"] = kind
                kw["metavar"] = f.name.upper()
                if f.metadata.get("choices"):
                    kw["choices"] = f.metadata["choices"]
            group.add_argument(_flag(f.name), **kw)


def config_from_args(ns: argparse.Namespace) -> RunConfig:
    values = vars(ns)
    parts = {}
    for section, cls in SECTIONS.items():
        parts[section] = cls(**{f.name: values.get(f"{section}.{f.name}", f.default) for f in dataclasses.fields(cls)})
    cfg = RunConfig(**parts)
    check_ranges(cfg)
    return cfg


def config_to_argv(cfg: RunConfig) -> list[str]:
    """The ``train`` flags that rebuild ``cfg`` exactly (inverse of :func:`config_from_args`)."""
    argv: list[str] = []
    for section in SECTIONS:
        for name, value in dataclasses.asdict(getattr(cfg, section)).items():
            if isinstance(value, bool):
                argv.append(_flag(name) if value else "--no-" + name.replace("_", "-"))
            else:
                argv += [_flag(name), repr(value) if isinstance(value, float) else str(value)]
    return argv


def check_ranges(cfg: RunConfig) -> None:
    """Numeric sanity that needs no registry; names are checked by the registries themselves."""
    problems = []
    if cfg.data.batch_size < 1:
        problems.append("--batch-size must be >= 1")
    if not 0.0 < cfg.comm.ratio <= 1.0:
        problems.append(f"--ratio must be in (0, 1], got {cfg.comm.ratio}")
    if cfg.comm.levels < 1:
        problems.append("--levels must be >= 1")
    if cfg.comm.net_latency < 0 or cfg.comm.net_bandwidth < 0:
        problems.append("--net-latency and --net-bandwidth must be >= 0")
    if cfg.run.steps < 1 and cfg.run.budget <= 0:
        problems.append("give --steps >= 1 or a positive --budget")
    if cfg.run.budget < 0:
        problems.append("--budget must be >= 0")
    if cfg.run.flush_every < 1:
        problems.append("--flush-every must be >= 1")
    if cfg.algo.gossip_rounds < 1:
        problems.append("--gossip-rounds must be >= 1")
    if cfg.algo.replicas < 1:
        problems.append("--replicas must be >= 1")
    if cfg.optim.n_critic < 1:
        problems.append("--n-critic must be >= 1")
    if cfg.optim.lr < 0:
        problems.append("--lr must be >= 0")
    if problems:
        raise UsageError("; ".join(problems))
