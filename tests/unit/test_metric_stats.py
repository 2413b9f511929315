"""FID and IS statistics against closed forms and an independent NumPy/SciPy reference."""
import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
import torch

from hpcgan.metrics.stats import ClassStats, FeatureStats, fid, frechet_distance


def reference_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """The textbook computation (pytorch-fid style): np.cov + scipy.linalg.sqrtm."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def reference_is(logits: np.ndarray) -> float:
    p = scipy.special.softmax(logits, axis=1)
    py = p.mean(axis=0)
    return float(np.exp(np.mean([scipy.stats.entropy(pi, py) for pi in p])))


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(600, 12)) @ rng.normal(size=(12, 12))
    b = rng.normal(loc=0.3, size=(500, 12)) @ rng.normal(size=(12, 12))
    return a, b


def test_fid_of_a_set_against_itself_is_zero(features):
    a, _ = features
    s = FeatureStats.of(a)
    assert abs(fid(s, s)) < 1e-6


def test_fid_against_a_shifted_copy_is_the_squared_shift(features):
    # Gaussians with equal covariances: FID = ||mu1 - mu2||^2 exactly
    a, _ = features
    delta = np.linspace(-1, 2, a.shape[1])
    got = fid(FeatureStats.of(a), FeatureStats.of(a + delta))
    assert got == pytest.approx(float(delta @ delta), rel=1e-8, abs=1e-8)


def test_fid_closed_form_for_commuting_covariances():
    # diagonal Sigma_1, Sigma_2: FID = ||dmu||^2 + sum_k (sqrt s1_k - sqrt s2_k)^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 9.0])
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(10 + 1 + 1 + 0, rel=1e-12)


def test_fid_matches_the_scipy_reference(features):
    a, b = features
    assert fid(FeatureStats.of(a), FeatureStats.of(b)) == pytest.approx(reference_fid(a, b), rel=1e-7)


def test_moments_match_numpy(features):
    a, _ = features
    s = FeatureStats.of(torch.tensor(a, dtype=torch.float32))
    assert s.mu.dtype == np.float64 and s.sigma.dtype == np.float64
    a32 = a.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(s.sigma, np.cov(a32, rowvar=False), rtol=1e-9, atol=1e-9)


def test_statistics_add_over_chunks(features):
    a, b = features
    whole = FeatureStats.of(a)
    parts = FeatureStats.empty(a.shape[1])
    for chunk in np.array_split(a, 7):
        parts.add(chunk)
    assert parts.n == whole.n
    np.testing.assert_allclose(parts.q, whole.q, rtol=1e-12)
    logits = np.random.default_rng(1).normal(size=(300, 5)) * 3
    cs1, cs2 = ClassStats.empty(5), ClassStats.empty(5)
    cs1.add(logits)
    for chunk in np.array_split(logits, 4):
        cs2.add(chunk)
    assert cs1.inception_score() == pytest.approx(cs2.inception_score(), rel=1e-12)


def test_is_matches_the_scipy_reference():
    logits = np.random.default_rng(2).normal(size=(400, 10)) * 4
    cs = ClassStats.empty(10)
    cs.add(torch.tensor(logits))
    assert cs.inception_score() == pytest.approx(reference_is(logits), rel=1e-9)


def test_is_closed_forms():
    k = 7
    confident = np.eye(k)[np.arange(70) % k] * 60.0       # one-hot, classes balanced: IS = k
    cs = ClassStats.empty(k)
    cs.add(confident)
    assert cs.inception_score() == pytest.approx(k, rel=1e-6)
    same = np.tile(np.random.default_rng(3).normal(size=(1, k)), (50, 1))  # identical p(y|x): IS = 1
    cs = ClassStats.empty(k)
    cs.add(same)
    assert cs.inception_score() == pytest.approx(1.0, abs=1e-12)
