"""Compressors: delta-approximate operators Q with ||Q(x) - x||^2 <= (1 - delta) ||x||^2.

A compressor is stateless apart from its hyper-parameters and never sees the network:
``compress(x, sizes)`` returns ``(payload, ctx)``; the payload is the list of tensors that travel,
``ctx`` never leaves the rank; ``decompress(payload, ctx)`` rebuilds a dense tensor shaped like x.
``sizes`` are the per-tensor lengths of the flat buffer x (one scale per parameter tensor).
For non-summable compressors ``decompress`` returns a new tensor (never a view of the payload),
so the aggregate can accumulate into it. A payload's shapes depend only on the length of x and the
compressor's settings, so a buffer's payload has the same size on every rank at every step.
``summable`` compressors produce payloads whose elementwise sum is the payload of the sum, so the
communicator may allreduce them; the others are allgathered, and ``decompress_sum`` turns every
rank's payload (stacked row-wise) into their sum.

Multi-round compressors (``rounds > 1``, summable only; PowerSGD) need the sum over ranks of one
payload to build the next: the exchange (:func:`hpcgan.exchange.collect`) allreduces the payload of
``compress``, hands the sum
to ``next_round(summed, ctx)``, which returns this rank's next payload (and records what it needs
in ``ctx``, a mutable state object), and so on; ``decompress`` receives the last round's sum. This
rank's own Q(x), which error feedback subtracts, is then ``local(payload, ctx)``; for one-round
compressors it is ``decompress(payload, ctx)`` and known at once. :func:`roundtrip` runs every round
on one process (each "sum over ranks" is the payload itself): Q(x) without a communicator.

A compressor declares its own options (``Options``: a frozen dataclass of :func:`~hpcgan.config.opt`
fields with defaults and bounds, the keywords of its constructor); everything else reads them from
the registry: the flags (``--ratio``), ``CommConfig.compressor_options``, DQGAN's accepted flags,
``hpcgan bench comm``'s flags and :func:`build_compressor` (``build_compressor("topk", ratio=0.01)``,
or from a ``CommConfig``: the same path). Adding a compressor with options touches its own module.

Registered here: identity. In their own modules: fp16 and bf16 (:mod:`.cast`), sign (:mod:`.sign`),
topk, topk-torch and randk (:mod:`.sparse`), qsgd (:mod:`.qsgd`), powersgd (:mod:`.powersgd`).
Bytes on the wire for d fp32 values (docs/ALGORITHMS.md section 0): identity 4d, fp16/bf16 2d, sign d/8 + 4 per tensor,
topk 8k, randk 4k (k = sum over tensors of ceil(ratio n_t)), qsgd ~ d*ceil(log2(2s+1))/8 + 4 per
tensor, powersgd 4 r (rows + cols) per compressed tensor plus the others dense.
"""
from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch

from ..config import SECTION_OF, CommConfig, Section
from ..errors import UsageError
from ..registry import Registry

Payload = list[torch.Tensor]


@dataclass(frozen=True)
class NoOptions(Section):
    """The options of a compressor that has none."""


class Compressor(ABC):
    name: ClassVar[str]
    summable: ClassVar[bool]
    #: collectives per aggregate; more than one only for summable compressors (see the module doc)
    rounds: ClassVar[int] = 1
    #: its own options: a frozen :class:`~hpcgan.config.Section` dataclass whose fields, declared
    #: with :func:`~hpcgan.config.opt` (default, help, bounds), are keyword arguments of the
    #: constructor. Each becomes a flag (``ratio`` -> ``--ratio``) and an entry of
    #: ``CommConfig.compressor_options``; two compressors may share an option declared the same way.
    Options: ClassVar[type[Section]] = NoOptions

    @abstractmethod
    def compress(self, x: torch.Tensor, sizes: Sequence[int]) -> tuple[Payload, Any]: ...

    @abstractmethod
    def decompress(self, payload: Payload, ctx: Any) -> torch.Tensor: ...

    def decompress_add(self, payload: Payload, ctx: Any, out: torch.Tensor) -> torch.Tensor:
        """``out += decompress(payload, ctx)`` in place (aggregation of gathered payloads)."""
        return out.add_(self.decompress(payload, ctx))

    def decompress_sum(self, payloads: Payload, ctx: Any) -> torch.Tensor:
        """sum_m decompress(payload_m, ctx) for M payloads stacked row-wise (every tensor of
        ``payloads`` has a leading dimension M; row m is payload m), added in row order, so every
        rank that sums the same rows gets the same bits. This default decompresses row by row;
        a compressor overrides it where it can do all rows in one go."""
        total = self.decompress([t[0] for t in payloads], ctx)
        for m in range(1, len(payloads[0])):
            self.decompress_add([t[m] for t in payloads], ctx, total)
        return total

    def next_round(self, summed: Payload, ctx: Any) -> Payload:
        """Multi-round compressors: this rank's payload of the next round, given the elementwise sum
        over ranks of the previous round's payloads; records what later rounds need in ``ctx``."""
        raise NotImplementedError(f"{self.name} is a one-round compressor")

    def local(self, payload: Payload, ctx: Any) -> torch.Tensor:
        """This rank's own Q(x) for the ``(payload, ctx)`` that ``compress`` returned, what error
        feedback subtracts. Multi-round compressors know it once every round has run."""
        return self.decompress(payload, ctx)

    def stats(self) -> dict[str, float]:
        """Figures of the last ``compress`` call a user may want to see (e.g. top-k's kept count
        and achieved delta); empty for most compressors."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State that changes from call to call (checkpointed with the algorithm; most have none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def delta(self, d: int) -> float:
        """Guaranteed delta for vectors of length d (a lower bound; 1 = exact)."""
        return 1.0

    def nbytes(self, payload: Payload) -> int:
        return sum(t.numel() * t.element_size() for t in payload)


COMPRESSORS: Registry[type[Compressor]] = Registry("compressor")


@COMPRESSORS.register("identity")
class Identity(Compressor):
    """Q(x) = x: dense fp32, delta = 1."""

    name, summable = "identity", True

    def compress(self, x, sizes):
        return [x], x.shape

    def decompress(self, payload, ctx):
        return payload[0].view(ctx)


def option_names(name: str) -> list[str]:
    """The options the compressor ``name`` declares."""
    return [f.name for f in dataclasses.fields(COMPRESSORS.get(name).Options)]


def declared_options() -> dict[str, tuple[type, dataclasses.Field, list[str]]]:
    """Every registered compressor's options: name -> (type, declaration, the compressors declaring
    it). An option two compressors declare differently, or named like a config field, is a
    programming error (TypeError)."""
    out: dict[str, tuple[type, dataclasses.Field, list[str]]] = {}
    for name in COMPRESSORS:
        options = COMPRESSORS.get(name).Options
        hints = typing.get_type_hints(options)
        for f in dataclasses.fields(options):
            if f.name in SECTION_OF:
                raise TypeError(f"compressor {name}: option {f.name} is named like a config field")
            if f.name not in out:
                out[f.name] = (hints[f.name], f, [name])
                continue
            kind, first, users = out[f.name]
            if (kind, first.default, dict(first.metadata)) != (hints[f.name], f.default, dict(f.metadata)):
                raise TypeError(f"compressor option {f.name} is declared differently by {users[0]} and {name}")
            users.append(name)
    return out


def build_compressor(spec: str | CommConfig, **options: Any) -> Compressor:
    """The compressor named ``spec`` with ``options`` (those it declares; the others at their
    defaults), checked against its declaration (UsageError): ``build_compressor("topk", ratio=0.01)``.
    For a :class:`~hpcgan.config.CommConfig`, the one ``spec.compressor`` names with its options'
    values from ``spec.compressor_options``."""
    if isinstance(spec, CommConfig):
        if options:
            raise TypeError("build_compressor(CommConfig) takes its options from the config")
        name = spec.compressor
        options = {k: spec.compressor_options[k] for k in option_names(name)}
    else:
        name = spec
    cls, declared = COMPRESSORS.get(name), option_names(name)
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise UsageError(f"compressor {name} takes {'options ' + ', '.join(declared) if declared else 'no options'}"
                         f"; got {', '.join(unknown)}")
    return cls(**dataclasses.asdict(cls.Options(**options)))


def local_rounds(compressor: Compressor, payload: Payload, ctx: Any) -> list[Payload]:
    """Every round's payload on one process, starting with ``payload``: each "sum over ranks" is
    this rank's own payload (what :func:`hpcgan.exchange.collect` does on one rank)."""
    rounds = [payload]
    for _ in range(compressor.rounds - 1):
        rounds.append(compressor.next_round(rounds[-1], ctx))
    return rounds


def roundtrip(compressor: Compressor, x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Q(x) on one process: compress, every further round, decompress."""
    payload, ctx = compressor.compress(x, sizes)
    return compressor.decompress(local_rounds(compressor, payload, ctx)[-1], ctx)

