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
is the same.) It is known only after round 2, so the exchange updates the memory then, and the
context (:class:`PowerContext`) keeps M, P^ and Q_m until then. The round structure is
:attr:`Compressor.rounds` / :meth:`next_round` of :mod:`.base`.

delta: ||Q(M) - M||^2 = ||M||^2 - ||P^^T M||^2 (a projection, never worse than sending nothing).
With a Gaussian Q, or any Q independent of a rotation-invariant M, span(M Q) keeps at least
r / rows of ||M||^2 in expectation, and power iteration moves it towards the top singular
subspace; rows <= ceil(sqrt(n)), so delta(d) = min(1, r / ceil(sqrt(d))) in that sense. There is no
worst-case bound (a warm start orthogonal to M's rows keeps nothing); error feedback recovers it.
Wire: 4 r (rows + cols) bytes per compressed tensor, over two allreduces, and 4 n per dense one.

The three products (M Q, P^^T M, P^ Q^T) are skinny (one side r), which BLAS runs several times
slower than a pass over memory: on CPU they are the C loops of ``powersgd.c`` (:mod:`.native`), one
streaming pass each; elsewhere, or without a compiler, torch's matmul. Both are deterministic;
they differ from each other in the last bits (summation order), so every rank must take the same
path, as ranks of one job do.
"""
from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UsageError
from . import native
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


@lru_cache(maxsize=1)
def _kernels() -> ctypes.CDLL | None:
    lib = native.load("powersgd")
    if lib is not None:
        ptr, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
        lib.hpcgan_psgd_project.argtypes = [ptr, i64, i64, ptr, i32, ptr]
        lib.hpcgan_psgd_backproject.argtypes = [ptr, i64, i64, ptr, i32, ptr]
        lib.hpcgan_psgd_expand.argtypes = [ptr, ptr, i64, i64, i32, ptr]
    return lib


def implementation() -> str:
    """What computes PowerSGD's products on CPU tensors here: ``c`` or ``torch``."""
    return "c" if _kernels() is not None else "torch"


def _native(t: torch.Tensor) -> ctypes.CDLL | None:
    return _kernels() if t.device.type == "cpu" else None


def project(m: Matrix, flat: torch.Tensor, qt: torch.Tensor) -> torch.Tensor:
    """P = M Q (rows x r) for Q^T = ``qt`` (r x cols, contiguous)."""
    lib = _native(flat)
    if lib is not None:
        p = flat.new_empty(m.rows, qt.shape[0])
        lib.hpcgan_psgd_project(flat[m.start:].data_ptr(), m.n, m.cols, qt.data_ptr(), qt.shape[0], p.data_ptr())
        return p
    p = F.linear(m.whole(flat), qt)  # with Q^T stored row-major, BLAS's faster layout
    return torch.cat([p, (qt[:, :m.tail] @ m.last(flat)).unsqueeze(0)]) if m.tail else p


def backproject(m: Matrix, flat: torch.Tensor, p_hat: torch.Tensor) -> torch.Tensor:
    """Q^T = P^^T M (r x cols) for P^ = ``p_hat`` (rows x r, contiguous)."""
    lib = _native(flat)
    if lib is not None:
        qt = flat.new_empty(p_hat.shape[1], m.cols)
        lib.hpcgan_psgd_backproject(flat[m.start:].data_ptr(), m.n, m.cols, p_hat.data_ptr(), p_hat.shape[1],
                                    qt.data_ptr())
        return qt
    qt = p_hat[:m.full].T @ m.whole(flat)
    if m.tail:
        qt[:, :m.tail] += torch.outer(p_hat[m.full], m.last(flat))
    return qt


def expand_into(m: Matrix, p_hat: torch.Tensor, qt: torch.Tensor, out: torch.Tensor) -> None:
    """The n values of P^ Q^T into ``out``'s slice of matrix ``m``."""
    lib = _native(out)
    if lib is not None:
        lib.hpcgan_psgd_expand(p_hat.data_ptr(), qt.data_ptr(), m.n, m.cols, qt.shape[0], out[m.start:].data_ptr())
        return
    torch.mm(p_hat[:m.full], qt, out=m.whole(out))
    if m.tail:
        m.last(out).copy_(p_hat[m.full] @ qt[:, :m.tail])


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

    def __init__(self, rank: int = DEFAULT_RANK, seed: int = 0):
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
        ps = [project(m, flat, qt) for m, qt in zip(lay.matrices, self._qt(sizes, lay, flat.device))]
        dense = _join([flat[s:s + n] for s, n in lay.dense], flat)
        return [dense, _join(ps, flat)], PowerContext(x.shape, x.dtype, sizes, flat)

    def next_round(self, summed, ctx: PowerContext):
        """Round 2: P^ from the summed P, then Q_m^T = P^^T M_m (the dense sum is kept for the end)."""
        lay = layout(ctx.sizes, self.rank)
        dense_sum, p_sum = summed
        ctx.dense_sum = dense_sum
        ctx.p_hat = [torch.linalg.qr(p, mode="reduced").Q.contiguous()
                     for p in _split(p_sum, [(m.rows, self.rank) for m in lay.matrices])]
        ctx.q_local = [backproject(m, ctx.flat, ph) for m, ph in zip(lay.matrices, ctx.p_hat)]
        return [_join(ctx.q_local, ctx.flat)]

    def _expand(self, ctx: PowerContext, qts: list[torch.Tensor], dense: torch.Tensor | None) -> torch.Tensor:
        """P^ Q^T of every matrix and ``dense`` (None: this rank's own dense values) in one buffer."""
        lay = layout(ctx.sizes, self.rank)
        out = torch.empty_like(ctx.flat)
        for m, ph, qt in zip(lay.matrices, ctx.p_hat, qts):
            expand_into(m, ph, qt, out)
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
