"""Gossip topologies as mixing matrices W (docs/ALGORITHMS.md section 2), looked up by ``--topology``.

W is M x M, symmetric, doubly stochastic, W_ij > 0 only on graph edges and the diagonal. One gossip
round replaces x^i by sum_j W_ij x^j; t rounds apply W^t. The mixing rate is
rho = max(|lambda_2|, |lambda_M|) (eigenvalues of W, lambda_1 = 1 > lambda_2 >= ... >= lambda_M):
for a connected graph rho < 1 and the deviation from the mean shrinks by at least rho per round.
Results files store ``spectral_gap`` = 1 - rho and ``mixing_rho`` = rho.

Builders (M ranks):
* ring: self and both neighbours 1/3 (M = 1: W = [1]; M = 2: the two ranks average, W = 11^T/2;
  M = 3 is then the complete graph);
* torus: an r x c grid with wrap-around (r the largest divisor of M <= sqrt M), self and the four
  grid neighbours 1/5 each; where two of them are the same rank (r or c <= 2) their weights add;
* exp2: neighbours i +- 2^k mod M for 2^k < M, uniform weight 1 / (degree + 1);
* complete: W = 11^T / M (rho = 0);
* identity: W = I, no communication (disconnected for M > 1: tests and ablation only);
* anything else is a file: ``.npy`` (numpy) or text (``numpy.loadtxt``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UsageError
from ..registry import Registry

TOL = 1e-6

TopologyBuilder = Callable[[int], np.ndarray]
TOPOLOGIES: Registry[TopologyBuilder] = Registry("topology")


@dataclass(frozen=True)
class GossipPlan:
    """What rank ``rank`` does in one gossip round: x <- self_weight x + sum_k weights[k] x^sources[k],
    sending its own x to every rank in ``destinations`` (W symmetric: the same ranks)."""

    rank: int
    self_weight: float
    sources: tuple[int, ...]
    weights: tuple[float, ...]
    destinations: tuple[int, ...]


class Topology:
    """A validated mixing matrix W for M ranks, its mixing rate rho and per-rank plans."""

    def __init__(self, W: np.ndarray, name: str = "custom", allow_disconnected: bool = False):
        self.W = check_mixing_matrix(W, name, allow_disconnected)
        self.name = name
        self.size = self.W.shape[0]
        self.rho = mixing_rate(self.W)

    @property
    def spectral_gap(self) -> float:
        return 1.0 - self.rho

    def plan(self, rank: int) -> GossipPlan:
        row = self.W[rank]
        others = tuple(int(j) for j in np.flatnonzero(row > 0) if j != rank)
        return GossipPlan(rank, float(row[rank]), others, tuple(float(row[j]) for j in others), others)

    def rounds(self, t: int) -> np.ndarray:
        """W^t: the effective mixing of t gossip rounds."""
        return np.linalg.matrix_power(self.W, t)


def check_mixing_matrix(W: np.ndarray, name: str = "W", allow_disconnected: bool = False) -> np.ndarray:
    """W as float64 if it is a valid mixing matrix, else a UsageError saying what is wrong."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise UsageError(f"mixing matrix {name} must be square, got shape {W.shape}")
    if not np.all(np.isfinite(W)):
        raise UsageError(f"mixing matrix {name} has non-finite entries")
    if W.min() < -TOL:
        raise UsageError(f"mixing matrix {name} has negative entries (min {W.min():.3g})")
    if not np.allclose(W, W.T, atol=TOL):
        raise UsageError(f"mixing matrix {name} is not symmetric (max |W - W^T| = {np.abs(W - W.T).max():.3g})")
    rows = W.sum(axis=1)
    if not np.allclose(rows, 1.0, atol=TOL):
        raise UsageError(f"mixing matrix {name} is not doubly stochastic: row sums range "
                         f"{rows.min():.6g}..{rows.max():.6g}, expected 1")
    W = np.where(W > TOL, W, 0.0)
    if not allow_disconnected and not is_connected(W):
        raise UsageError(f"mixing matrix {name} describes a disconnected graph; gossip would never reach consensus")
    return W


def is_connected(W: np.ndarray) -> bool:
    """Whether the graph with an edge i - j wherever W_ij > 0 is connected (breadth-first search)."""
    seen, frontier = {0}, [0]
    while frontier:
        nxt = {int(j) for i in frontier for j in np.flatnonzero(W[i] > 0)} - seen
        seen |= nxt
        frontier = list(nxt)
    return len(seen) == W.shape[0]


def mixing_rate(W: np.ndarray) -> float:
    """rho = max(|lambda_2|, |lambda_M|) of symmetric W (0 for M = 1)."""
    if W.shape[0] == 1:
        return 0.0
    lam = np.sort(np.linalg.eigvalsh((W + W.T) / 2))[::-1]
    return float(max(abs(lam[1]), abs(lam[-1])))


def circulant(M: int, offsets: set[int], weight: float) -> np.ndarray:
    """W_ij += weight for every j = i + o (mod M), o in offsets (repeats add), self gets the rest."""
    W = np.zeros((M, M))
    for i in range(M):
        for o in offsets:
            W[i, (i + o) % M] += weight
    return W


@TOPOLOGIES.register("ring")
def ring(M: int) -> np.ndarray:
    if M <= 2:
        return complete(M)
    W = circulant(M, {-1, 1}, 1 / 3)
    np.fill_diagonal(W, 1 / 3)
    return W


@TOPOLOGIES.register("torus")
def torus(M: int) -> np.ndarray:
    r = max(d for d in range(1, math.isqrt(M) + 1) if M % d == 0)
    c = M // r
    W = np.zeros((M, M))
    for i in range(M):
        a, b = divmod(i, c)
        W[i, i] += 1 / 5
        for da, db in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            W[i, ((a + da) % r) * c + (b + db) % c] += 1 / 5
    return W


@TOPOLOGIES.register("exp2")
def exp2(M: int) -> np.ndarray:
    offsets = {s * 2**k for k in range(max(M - 1, 1).bit_length()) if 2**k < M for s in (1, -1)}
    offsets = {o % M for o in offsets} - {0}
    W = circulant(M, offsets, 1 / (len(offsets) + 1))
    np.fill_diagonal(W, 1 / (len(offsets) + 1))
    return W


@TOPOLOGIES.register("complete")
def complete(M: int) -> np.ndarray:
    return np.full((M, M), 1.0 / M)


@TOPOLOGIES.register("identity")
def identity(M: int) -> np.ndarray:
    return np.eye(M)


def load_matrix(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"unknown topology '{path}'; valid: {', '.join(TOPOLOGIES.names())} or a W file (.npy or text)")
    try:
        W = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, ndmin=2)
    except Exception as e:  # OSError, ValueError (a huge header, bad text), EOFError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot read mixing matrix from {path}: {first}") from None
    if W.dtype.kind not in "biuf":
        raise UsageError(f"mixing matrix {path} must hold numbers, not {W.dtype}")
    return W


def build_topology(name: str, M: int) -> Topology:
    """The topology ``--topology`` names, for M ranks; files must be M x M and connected."""
    if name in TOPOLOGIES:
        return Topology(TOPOLOGIES.get(name)(M), name, allow_disconnected=(name == "identity"))
    W = load_matrix(name)
    if W.ndim == 2 and W.shape != (M, M):
        raise UsageError(f"mixing matrix {name} is {W.shape[0]}x{W.shape[1]} but the job has {M} ranks")
    return Topology(W, name)
