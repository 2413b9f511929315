"""PowerSGD (Vogels, Karimireddy, Jaggi 2019): rank-r compression by one warm-started step of power
iteration; summable, two allreduces.

Each parameter tensor of n values is viewed as a rows x cols matrix M, row-major, with cols the
power of two >= sqrt(n) and rows = ceil(n / cols) (the last row zero-padded): compressors see tensor
lengths only, and for layers whose widths are powers of two a matrix row is then a whole piece of a
weight row, so a gradient's low rank survives the view. A tensor is compressed when
r (rows + cols) <= n / 2; the others (biases, small tensors) are sent dense.

With Q (cols x r) the same on every rank (Gaussian from ``seed`` at the first call, then the last
call's aggregated Q: the warm start) and M_m rank m's matrix:

    round 1:  P_m = M_m Q                      allreduce: P = sum_m P_m   (dense tensors ride along)
    round 2:  P^ = orthonormal basis of P (QR);  Q_m = M_m^T P^;   allreduce: Q = sum_m Q_m
    result:   (1/M) sum_m P^ Q_m^T = P^ Q^T / M;  Q is kept as the next call's warm start

Rank m's own Q(M_m) = P^ Q_m^T = P^ P^^T M_m, the projection of M_m onto span(P^), is what error
feedback subtracts (:class:`~.feedback.ErrorFeedback`, as in Algorithm 2 of the paper): the
residuals then average to the dense mean minus the applied step, which is what the DQGAN invariant
needs. (torch's hook subtracts the aggregate P^ Q^T / M on every rank instead; the mean residual
is the same.) It is known only after round 2, so ErrorFeedback settles it lazily, and the context
(:class:`PowerContext`) keeps M, P^ and Q_m until then. The round structure is
:attr:`Compressor.rounds` / :meth:`next_round` of :mod:`.base`.

delta: ||Q(M) - M||^2 = ||M||^2 - ||P^^T M||^2 (a projection, never worse than sending nothing).
With a Gaussian Q, or any Q independent of a rotation-invariant M, span(M Q) keeps at least
r / rows of ||M||^2 in expectation, and power iteration moves it towards the top singular
subspace; rows <= ceil(sqrt(n)), so delta(d) = min(1, r / ceil(sqrt(d))) in that sense. There is no
worst-case bound (a warm start orthogonal to M's rows keeps nothing); error feedback recovers it.
Wire: 4 r (rows + cols) bytes per compressed tensor, over two allreduces, and 4 n per dense one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from ..config import CommConfig
from ..errors import UsageError
from .base import COMPRESSORS, Compressor
from .counter import splitmix64

DEFAULT_RANK = 4


@dataclass(frozen=True)
class Matrix:
    """One compressed tensor: values [start, start + n) viewed as ``rows`` x ``cols``; the first
    ``full`` rows are whole, the last (if ``tail`` > 0) holds ``tail`` values and zeros."""

    start: int
    n: int
    cols: int

    @property
    def full(self) -> int:
        return self.n // self.cols

    @property
    def tail(self) -> int:
        return self.n - self.full * self.cols

    @property
    def rows(self) -> int:
        return self.full + (self.tail > 0)

    def whole(self, flat: torch.Tensor) -> torch.Tensor:
        return flat[self.start:self.start + self.full * self.cols].view(self.full, self.cols)

    def last(self, flat: torch.Tensor) -> torch.Tensor:
        return flat[self.start + self.full * self.cols:self.start + self.n]


@dataclass(frozen=True)
class Layout:
    matrices: tuple[Matrix, ...]
    dense: tuple[tuple[int, int], ...]   # (start, n) of the tensors sent as they are


@lru_cache(maxsize=64)
def layout(sizes: tuple[int, ...], rank: int) -> Layout:
    matrices, dense, start = [], [], 0
    for n in sizes:
        cols = 1 << math.ceil(math.log2(math.sqrt(n))) if n > 1 else 1
        m = Matrix(start, n, cols)
        if rank * (m.rows + cols) <= n / 2:
            matrices.append(m)
        else:
            dense.append((start, n))
        start += n
    return Layout(tuple(matrices), tuple(dense))


@dataclass
class PowerContext:
    """One call's state across its rounds (on this rank only)."""

    shape: torch.Size
    dtype: torch.dtype
    sizes: tuple[int, ...]
    flat: torch.Tensor                       # the fp32 input: the matrices are views of it
    p_hat: list[torch.Tensor] = field(default_factory=list)    # after round 1
    q_local: list[torch.Tensor] = field(default_factory=list)  # Q_m^T, after round 1
    dense_sum: torch.Tensor | None = None


def _split(buf: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    if len(shapes) == 1:
        return [buf.view(shapes[0])]
    return [t.view(s) for t, s in zip(buf.split([a * b for a, b in shapes]), shapes)]


def _join(parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """The parts flattened end to end (no copy for one part)."""
    if len(parts) == 1:
        return parts[0].reshape(-1)
    return torch.cat([p.reshape(-1) for p in parts]) if parts else like.new_zeros(0)


@COMPRESSORS.register("powersgd")
class PowerSGD(Compressor):
    name, summable, rounds = "powersgd", True, 2

    def __init__(self, cfg: CommConfig | None = None, rank: int = DEFAULT_RANK, seed: int = 0):
        if rank < 1:
            raise UsageError(f"powersgd rank must be >= 1, got {rank}")
        self.rank, self.seed = rank, seed
        self.warm: dict[tuple[int, ...], list[torch.Tensor]] = {}  # per buffer layout: Q of each matrix

    def delta(self, d: int) -> float:
        return min(1.0, self.rank / math.ceil(math.sqrt(d)))

    def _qt(self, sizes: tuple[int, ...], lay: Layout, device) -> list[torch.Tensor]:
        """Q^T (r x cols) of every matrix of this buffer layout: Gaussian at first, then warm."""
        if sizes not in self.warm:
            self.warm[sizes] = [
                torch.randn(self.rank, m.cols, generator=torch.Generator().manual_seed(
                    splitmix64(self.seed ^ splitmix64(t) ^ m.n) >> 1)).to(device)
                for t, m in enumerate(lay.matrices)]
        return self.warm[sizes]

    def compress(self, x, sizes):
        flat = x.reshape(-1).to(torch.float32).contiguous()
        sizes = tuple(sizes) if sizes else (flat.numel(),)
        lay = layout(sizes, self.rank)
        ps = []
        for m, qt in zip(lay.matrices, self._qt(sizes, lay, flat.device)):
            p = F.linear(m.whole(flat), qt)  # M Q, with Q^T stored row-major (the fast layout)
            if m.tail:
                p = torch.cat([p, (qt[:, :m.tail] @ m.last(flat)).unsqueeze(0)])
            ps.append(p)
        dense = _join([flat[s:s + n] for s, n in lay.dense], flat)
        return [dense, _join(ps, flat)], PowerContext(x.shape, x.dtype, sizes, flat)

    def next_round(self, summed, ctx: PowerContext):
        """Round 2: P^ from the summed P, then Q_m^T = P^^T M_m (the dense sum is kept for the end)."""
        lay = layout(ctx.sizes, self.rank)
        dense_sum, p_sum = summed
        ctx.dense_sum = dense_sum
        ctx.p_hat = [torch.linalg.qr(p, mode="reduced").Q
                     for p in _split(p_sum, [(m.rows, self.rank) for m in lay.matrices])]
        ctx.q_local = []
        for m, ph in zip(lay.matrices, ctx.p_hat):
            qt = ph[:m.full].T @ m.whole(ctx.flat)
            if m.tail:
                qt[:, :m.tail] += torch.outer(ph[m.full], m.last(ctx.flat))
            ctx.q_local.append(qt)
        return [_join(ctx.q_local, ctx.flat)]

    def _expand(self, ctx: PowerContext, qts: list[torch.Tensor], dense: torch.Tensor | None) -> torch.Tensor:
        """P^ Q^T of every matrix and ``dense`` (None: this rank's own dense values) in one buffer."""
        lay = layout(ctx.sizes, self.rank)
        out = torch.empty_like(ctx.flat)
        for m, ph, qt in zip(lay.matrices, ctx.p_hat, qts):
            torch.mm(ph[:m.full], qt, out=m.whole(out))
            if m.tail:
                m.last(out).copy_(ph[m.full] @ qt[:, :m.tail])
        offset = 0
        for s, n in lay.dense:
            out[s:s + n] = ctx.flat[s:s + n] if dense is None else dense[offset:offset + n]
            offset += n
        return out

    def decompress(self, payload, ctx: PowerContext):
        """P^ Q^T from the summed Q of round 2 (and the summed dense values); keeps Q as the warm start."""
        lay = layout(ctx.sizes, self.rank)
        qts = [q.clone() for q in _split(payload[0], [(self.rank, m.cols) for m in lay.matrices])]
        self.warm[ctx.sizes] = qts
        return self._expand(ctx, qts, ctx.dense_sum).view(ctx.shape).to(ctx.dtype)

    def local(self, payload, ctx: PowerContext):
        """This rank's own P^ Q_m^T (and its dense values), once both rounds have run."""
        if not ctx.p_hat and layout(ctx.sizes, self.rank).matrices:
            raise RuntimeError("powersgd: this rank's compressed value is known only after both rounds")
        return self._expand(ctx, ctx.q_local, None).view(ctx.shape).to(ctx.dtype)

    def state_dict(self) -> dict[str, Any]:
        """The warm-start Q^T of each buffer layout (keyed by its sizes, as text)."""
        return {"seed": self.seed, "warm": {",".join(map(str, k)): [q.clone() for q in v] for k, v in self.warm.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.warm = {tuple(int(n) for n in k.split(",")): [q.clone() for q in v] for k, v in state["warm"].items()}
