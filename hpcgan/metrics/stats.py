"""Statistics of features and class probabilities, additive over ranks, and the metrics built on them.

Shape (after torch-fidelity): features -> statistics -> metric. Every statistic here is a sum, so
each rank accumulates its own share and one allreduce over the control channel gives the statistic
of all samples; the metric computed from it is then identical to a single-process computation on
the same samples.
Everything is float64.

* :class:`FeatureStats`  n, S = sum_i f_i, Q = sum_i f_i f_i^T  ->  mu = S/n,
  Sigma = (Q - n mu mu^T) / (n - 1)  (unbiased, as numpy.cov).
* :func:`frechet_distance`  FID = ||mu_1 - mu_2||^2 + Tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^{1/2}).
  Tr (Sigma_1 Sigma_2)^{1/2} = sum_k sqrt(lambda_k) with lambda_k the eigenvalues of the symmetric
  PSD matrix Sigma_1^{1/2} Sigma_2 Sigma_1^{1/2}, which has the same spectrum as Sigma_1 Sigma_2.
* :class:`ClassStats`  n, P = sum_i p(y|x_i), H = sum_i sum_y p(y|x_i) log p(y|x_i)  ->
  IS = exp E_x KL(p(y|x) || p(y)) = exp(H/n - sum_y pbar_y log pbar_y),  pbar = P/n,
  since E_x KL(p(y|x) || pbar) = E_x sum_y p log p - sum_y pbar log pbar.
* :func:`inception_score` over S splits (what papers report, S = 10): sample i of the global order
  goes to split i mod S (:func:`split_of`; interleaved rather than contiguous, so samples generated
  label by label still spread over every split), one :class:`ClassStats` each; IS = mean over the
  splits of their IS, ± their standard deviation (numpy's, ddof = 0, as torch-fidelity and the
  original code). S = 1 is the IS of all n samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..comm.control import ControlChannel, control_of

#: Inception-score splits: the standard 10 (Salimans et al. 2016; torch-fidelity's default)
IS_SPLITS = 10


def _as64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def allreduce_arrays(arrays: list[np.ndarray], comm: ControlChannel) -> list[np.ndarray]:
    """Sum a list of arrays over ``comm`` with one allreduce of their float64 concatenation."""
    flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
    control_of(comm).allreduce_(flat)  # in place: flat holds the sums
    out, at = [], 0
    for a in arrays:
        out.append(flat[at:at + a.size].reshape(a.shape))
        at += a.size
    return out


def add_by_label(n: np.ndarray, s: np.ndarray, q: np.ndarray, features: np.ndarray, labels: np.ndarray) -> None:
    """Per label c among ``labels``: count, feature sum and second-moment sum of the features of
    label c, added into n[c], s[c] and q[c] (the per-class form of :class:`FeatureStats`)."""
    for c in np.unique(labels):
        f = features[labels == c]
        n[c] += f.shape[0]
        s[c] += f.sum(axis=0)
        q[c] += f.T @ f


@dataclass
class FeatureStats:
    """Count, first and second moment sums of d-dimensional features."""

    n: int
    s: np.ndarray       # (d,)
    q: np.ndarray       # (d, d)

    @classmethod
    def empty(cls, dim: int) -> "FeatureStats":
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    @classmethod
    def of(cls, features: torch.Tensor | np.ndarray) -> "FeatureStats":
        f = _as64(features)
        return cls(f.shape[0], f.sum(axis=0), f.T @ f)

    def add(self, features: torch.Tensor | np.ndarray) -> None:
        f = _as64(features)
        self.n += f.shape[0]
        self.s += f.sum(axis=0)
        self.q += f.T @ f

    def allreduce(self, comm: ControlChannel) -> "FeatureStats":
        n, s, q = allreduce_arrays([np.array([self.n], dtype=np.float64), self.s, self.q], comm)
        return FeatureStats(int(round(n[0])), s, q)

    @property
    def mu(self) -> np.ndarray:
        return self.s / self.n

    @property
    def sigma(self) -> np.ndarray:
        if self.n < 2:
            raise ValueError("a covariance needs at least 2 samples")
        mu = self.mu
        return (self.q - self.n * np.outer(mu, mu)) / (self.n - 1)

    def to_dict(self) -> dict[str, np.ndarray]:
        return {"n": np.array(self.n), "s": self.s, "q": self.q}

    @classmethod
    def from_dict(cls, d) -> "FeatureStats":
        return cls(int(d["n"]), np.asarray(d["s"], np.float64), np.asarray(d["q"], np.float64))


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(Sigma1 + Sigma2 - 2 (Sigma1 Sigma2)^{1/2}), in float64."""
    root1 = _sqrt_psd(sigma1)
    lam = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    tr_sqrt = float(np.sqrt(np.clip(lam, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_sqrt)


def fid(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


@dataclass
class ClassStats:
    """Count, summed class probabilities and summed negative entropies of p(y|x)."""

    n: int
    p: np.ndarray      # (k,)  sum_i p(y|x_i)
    h: float           # sum_i sum_y p log p

    @classmethod
    def empty(cls, k: int) -> "ClassStats":
        return cls(0, np.zeros(k), 0.0)

    def add(self, logits: torch.Tensor | np.ndarray) -> None:
        lg = _as64(logits)
        logp = lg - lg.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        self.n += lg.shape[0]
        self.p += p.sum(axis=0)
        self.h += float((p * logp).sum())

    def allreduce(self, comm: ControlChannel) -> "ClassStats":
        n, p, h = allreduce_arrays([np.array([self.n], np.float64), self.p, np.array([self.h])], comm)
        return ClassStats(int(round(n[0])), p, float(h[0]))

    def inception_score(self) -> float:
        """exp(E_x KL(p(y|x) || p(y))) with p(y) the mean of p(y|x) over the samples."""
        if self.n == 0:
            raise ValueError("no samples")
        pbar = self.p / self.n
        nz = pbar > 0
        return float(np.exp(self.h / self.n - np.sum(pbar[nz] * np.log(pbar[nz]))))


def inception_score(splits: list[ClassStats]) -> tuple[float, float]:
    """(mean, std) over splits of each split's IS (std 0 for one split)."""
    scores = np.array([c.inception_score() for c in splits])
    return float(scores.mean()), float(scores.std())


def split_of(index: np.ndarray, splits: int) -> np.ndarray:
    """The IS split of global sample ``index``: index mod ``splits``."""
    return np.asarray(index, dtype=np.int64) % splits
