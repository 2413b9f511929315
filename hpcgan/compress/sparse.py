"""Sparsifiers: top-k and random-k, per parameter tensor: tensor t of n_t values keeps
k_t = min(n_t, max(1, ceil(ratio n_t))) coordinates, K = sum_t k_t in all. Payload shapes depend
only on the sizes.

top-k (``topk``) keeps the k_t entries of largest |x_i| of each tensor: ||Q(x_t) - x_t||^2 = the sum
of its n_t - k_t smallest x_i^2 <= (1 - k_t/n_t) ||x_t||^2, so delta >= min_t k_t/n_t >= ratio.
Ties are broken by the lower index, so the kept set is a function of x alone. Payload: values fp32
(bit copies) and global indices int32, in increasing index order: 8K bytes. The indices differ
between ranks, so it is not summable. On CPU the selection is the C kernel of ``topk.c``: one pass
against a threshold estimated from a sample (as DGC and SIDCo do), refined on a candidate buffer of
about 1.5 k_t entries to the exact top-k, so its delta is exact top-k's. The torch fallback (device
tensors, no C compiler, ``$HPCGAN_NATIVE=0``) selects under the same order with torch ops, giving
the same bits. ``topk-torch`` is the same operator through ``torch.topk`` (the reference; ties are
broken as torch breaks them). :meth:`TopK.stats` holds the last call's kept count K and achieved
delta = ||Q(x)||^2 / ||x||^2 (= 1 - ||Q(x) - x||^2 / ||x||^2, as kept values are exact).

random-k (``randk``) keeps, in tensor t of n values, the k coordinates (o + j s) mod n, j < k, with
stride s = floor(n/k) (so they are distinct) and an offset o uniform in [0, n) drawn from a
counter-based hash of (seed, call, t) (:mod:`.counter`): no permutation of n is drawn, and every
coordinate is kept with probability exactly k/n, so E||Q(x_t) - x_t||^2 = (1 - k_t/n_t) ||x_t||^2:
delta = min_t k_t/n_t >= ratio, in expectation. Every rank seeds identically and counts calls
(``calls``, checkpointed), so all ranks keep the same coordinates and the payloads (values only,
4K bytes) can be summed. Ranks must call it in the same order (each exchange has its own copy, called once per step).
"""
from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch

from ..config import Section, opt
from . import native
from .base import COMPRESSORS, Compressor
from .counter import call_key, splitmix64

SMALL = 8192        # tensors up to this long skip the sampled threshold (as in topk.c)
SAMPLE = 4096       # sampled keys per larger tensor (torch fallback)


def keep_counts(ratio: float, sizes: Sequence[int]) -> list[int]:
    """k_t = min(n_t, max(1, ceil(ratio n_t))) per tensor (0 for an empty one)."""
    return [min(n, max(1, math.ceil(ratio * n))) for n in sizes]


@lru_cache(maxsize=1)
def _kernels() -> ctypes.CDLL | None:
    lib = native.load("topk")
    if lib is not None:
        ptr = ctypes.c_void_p
        lib.hpcgan_topk.argtypes = [ptr, ptr, ptr, ctypes.c_int64, ptr, ptr, ptr]
        lib.hpcgan_topk.restype = ctypes.c_int
        lib.hpcgan_topk_isa.restype = ctypes.c_char_p
    return lib


def implementation() -> str:
    """What selects top-k on CPU tensors here: ``c-avx2``, ``c-portable`` or ``torch``."""
    lib = _kernels()
    return f"c-{lib.hpcgan_topk_isa().decode()}" if lib is not None else "torch"


def _native(t: torch.Tensor) -> ctypes.CDLL | None:
    return _kernels() if t.device.type == "cpu" else None


@lru_cache(maxsize=32)
def _plan(sizes: tuple[int, ...], ratio: float) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """k_t per tensor, and sizes and k_t as int64 tensors for the kernel."""
    ks = keep_counts(ratio, sizes)
    return ks, torch.tensor(sizes, dtype=torch.int64), torch.tensor(ks, dtype=torch.int64)


@dataclass(frozen=True)
class SparseOptions(Section):
    ratio: float = opt(0.01, "fraction of coordinates kept, k = ceil(ratio n) per tensor", gt=0, le=1)


class Sparse(Compressor):
    Options = SparseOptions

    def __init__(self, ratio: float = SparseOptions.ratio):
        self.ratio = SparseOptions(ratio=ratio).ratio  # checked as declared

    def delta(self, d: int) -> float:
        """min_t k_t/n_t >= ratio, whatever the split of the d values into tensors."""
        return self.ratio

    @staticmethod
    def _scatter(values: torch.Tensor, index: torch.Tensor, shape, dtype) -> torch.Tensor:
        out = torch.zeros(math.prod(shape), dtype=values.dtype, device=values.device)
        out.index_copy_(0, index.long(), values)
        return out.view(shape).to(dtype)


class _TopKBase(Sparse):
    """top-k's payload, decompression and statistics; subclasses select the indices."""

    summable = False

    def __init__(self, ratio: float = SparseOptions.ratio):
        super().__init__(ratio)
        self._stats: dict[str, float] = {}

    def compress(self, x, sizes):
        flat = x.reshape(-1).to(torch.float32).contiguous()
        sizes = tuple(sizes) if sizes else (flat.numel(),)
        values, index, stats = self._select(flat, sizes)
        kept_sq, total_sq = stats.pop("kept_sq"), stats.pop("total_sq")
        self._stats = {"k": float(values.numel()), "kept": float(values.numel()),
                       "delta": min(1.0, kept_sq / total_sq) if total_sq > 0 else 1.0, **stats}
        return [values, index], (x.shape, x.dtype)

    def _select(self, flat: torch.Tensor, sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(values, int32 global indices in increasing order, stats with kept_sq and total_sq)."""
        raise NotImplementedError

    def decompress(self, payload, ctx):
        values, index = payload
        return self._scatter(values, index, *ctx)

    def decompress_add(self, payload, ctx, out):
        """Adds the K values at their indices (distinct, so the same sums as a dense add)."""
        values, index = payload
        out.view(-1).index_add_(0, index.long(), values.to(out.dtype))
        return out

    def decompress_sum(self, payloads, ctx):
        """One scatter of every rank's entries, in rank order: each rank's indices are distinct,
        so each output element receives its ranks' values in rank order, as row-by-row adds do."""
        values, index = payloads
        shape, dtype = ctx
        out = torch.zeros(math.prod(shape), dtype=dtype, device=values.device)  # summed in x's dtype, as row adds
        return out.index_add_(0, index.reshape(-1).long(), values.reshape(-1).to(dtype)).view(shape)

    def stats(self) -> dict[str, float]:
        """The last call's K (= kept: the payload always carries exactly K entries), achieved delta
        and, for the threshold selection, candidates per kept entry and passes per tensor."""
        return dict(self._stats)


@COMPRESSORS.register("topk")
class TopK(_TopKBase):
    name = "topk"

    def _select(self, flat, sizes):
        ks, lengths, kt = _plan(sizes, self.ratio)
        lib = _native(flat)
        if lib is None:
            return _select_torch(flat, sizes, ks)
        values = torch.empty(sum(ks), dtype=torch.float32)
        index = torch.empty(sum(ks), dtype=torch.int32)
        acc = torch.zeros(4, dtype=torch.float64)
        if lib.hpcgan_topk(flat.data_ptr(), lengths.data_ptr(), kt.data_ptr(), len(sizes), values.data_ptr(),
                           index.data_ptr(), acc.data_ptr()) != 0:
            raise MemoryError("topk: the C kernel could not allocate its candidate buffer")
        total_sq, kept_sq, appended, passes = acc.tolist()
        return values, index, {"total_sq": total_sq, "kept_sq": kept_sq,
                               "candidates_per_k": appended / max(1, sum(ks)), "passes": passes / len(sizes)}


def _sum_sq(t: torch.Tensor) -> float:
    """sum t_i^2 in fp64 (the statistics compare deltas to 1e-6)."""
    return float(t.double().norm()) ** 2


def _sampled_threshold(key: torch.Tensor, k: int) -> int:
    """A key about 1.5 k of the n keys reach, from SAMPLE keys at quasi-random positions (a Weyl
    sequence, so the sample never aligns with a row length); 0 for small tensors."""
    n = key.numel()
    if n <= SMALL:
        return 0
    step = int(n * 0.6180339887498949) | 1
    sample = key[(torch.arange(SAMPLE, device=key.device) * step) % n]
    expected = SAMPLE * k / n
    want = int(expected + 3.0 * math.sqrt(expected)) + 2
    return 0 if want >= SAMPLE else int(sample.sort(descending=True).values[want - 1])


def _select_torch(flat: torch.Tensor, sizes: tuple[int, ...], ks: list[int]):
    """The selection of ``topk.c`` in torch ops: candidates above the sampled threshold (all entries
    if fewer than k pass), the k best of them by (key desc, index asc), in index order."""
    keys = flat.view(torch.int32) & 0x7FFFFFFF
    chosen, candidates, passes, start = [], 0, 0, 0
    for n, k in zip(sizes, ks):
        key = keys[start:start + n]
        if k >= n:
            idx = torch.arange(n, device=flat.device)
        else:
            thr = _sampled_threshold(key, k)
            cand = (key >= thr).nonzero().view(-1) if thr > 0 else torch.arange(n, device=flat.device)
            passes += 1
            if cand.numel() < k:  # the sample overestimated the k-th key: take every entry
                cand, passes = torch.arange(n, device=flat.device), passes + 1
            candidates += cand.numel()
            best = torch.sort(key[cand], descending=True, stable=True).indices[:k]
            idx = cand[best].sort().values
        chosen.append(idx + start)
        start += n
    index = torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.int64, device=flat.device)
    values = flat[index]
    return values, index.to(torch.int32), {
        "total_sq": _sum_sq(flat), "kept_sq": _sum_sq(values),
        "candidates_per_k": candidates / max(1, sum(ks)), "passes": passes / max(1, len(sizes))}


@COMPRESSORS.register("topk-torch")
class TopKTorch(_TopKBase):
    """The reference top-k: ``torch.topk`` of |x| per tensor (ties as torch breaks them)."""

    name = "topk-torch"

    def _select(self, flat, sizes):
        ks = keep_counts(self.ratio, sizes)
        chosen, start = [], 0
        for seg, k in zip(flat.split(list(sizes)), ks):
            chosen.append(seg.abs().topk(k, sorted=False).indices.sort().values + start)
            start += seg.numel()
        index = torch.cat(chosen)
        values = flat[index]
        return values, index.to(torch.int32), {"total_sq": _sum_sq(flat), "kept_sq": _sum_sq(values)}


@lru_cache(maxsize=32)
def _strides(sizes: tuple[int, ...], ratio: float, device: str) -> tuple[torch.Tensor, ...]:
    """Per kept slot: its tensor's start, length and number, and j s (the slot's step from the offset)."""
    ks = keep_counts(ratio, sizes)
    starts = [sum(sizes[:t]) for t in range(len(sizes))]
    slot_tensor = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(ks))
    j = torch.cat([torch.arange(k) for k in ks]) if ks else torch.zeros(0, dtype=torch.int64)
    stride = torch.tensor([n // k if k else 1 for n, k in zip(sizes, ks)])
    on = lambda t: t.to(device)  # noqa: E731
    return (on(torch.tensor(starts)[slot_tensor]), on(torch.tensor(sizes)[slot_tensor]), on(slot_tensor),
            on(j * stride[slot_tensor]))


@COMPRESSORS.register("randk")
class RandK(Sparse):
    name, summable = "randk", True

    def __init__(self, ratio: float = SparseOptions.ratio, seed: int = 0):
        super().__init__(ratio)
        self.seed, self.calls = seed, 0

    def indices(self, sizes: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        """The global int64 indices this call keeps (advances the call counter)."""
        sizes = tuple(sizes)
        start, length, tensor, step = _strides(sizes, self.ratio, str(device))
        key = call_key(self.seed, 0, self.calls)
        self.calls += 1
        offsets = torch.tensor([splitmix64(key ^ t) % n if n else 0 for t, n in enumerate(sizes)], device=device)
        return start + (offsets[tensor] + step) % length

    def compress(self, x, sizes):
        flat = x.reshape(-1).to(torch.float32)
        index = self.indices(sizes if sizes else (flat.numel(),), flat.device)
        return [flat[index]], (x.shape, x.dtype, index)

    def decompress(self, payload, ctx):
        shape, dtype, index = ctx
        return self._scatter(payload[0], index, shape, dtype)

    def state_dict(self):
        return {"seed": self.seed, "calls": self.calls}

    def load_state_dict(self, state):
        self.seed = int(state.get("seed", self.seed))
        self.calls = int(state["calls"])
