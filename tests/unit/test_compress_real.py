"""Compressors on real gradients: dcgan32 on digits (the issue's measurement), delta-approximate
bound per compressor, and the sampled-threshold top-k against torch.topk."""
from __future__ import annotations

import numpy as np
import pytest

from hpcgan.benchmarks.gradients import real_gradient
from hpcgan.compress import build_compressor
from hpcgan.compress.base import roundtrip
from hpcgan.compress.sparse import keep_counts
from hpcgan.config import CommConfig


@pytest.fixture(scope="module")
def grads():
    """The gradient at initialisation and one after 3 plain SGD steps."""
    return [real_gradient("dcgan32", "digits", batch=32, steps=s) for s in (1, 4)]


@pytest.mark.parametrize("name", ["sign", "topk", "topk-torch", "randk", "qsgd", "powersgd"])
def test_delta_bound_holds_on_real_gradients(grads, name):
    for x, sizes in grads:
        c = build_compressor(CommConfig(compressor=name, compressor_options={"ratio": 0.01, "levels": 16}))
        draws = 10 if name in ("randk", "qsgd") else 1
        err = np.mean([float((roundtrip(c, x, sizes) - x).double().pow(2).sum()) for _ in range(draws)])
        bound = (1 - c.delta(x.numel())) * float(x.double().pow(2).sum())
        assert err <= bound * (1.02 if draws > 1 else 1 + 1e-6), f"{name}: {err} > {bound}"


def test_sampled_threshold_topk_keeps_k_and_the_delta_of_exact_topk_on_real_gradients(grads):
    """The issue's target: kept count in [0.9 k, 1.1 k], delta within 10% of torch.topk's."""
    for x, sizes in grads:
        fast, exact = (build_compressor(n, ratio=0.01) for n in ("topk", "topk-torch"))
        fast.compress(x, sizes)
        exact.compress(x, sizes)
        k = sum(keep_counts(0.01, sizes))
        assert 0.9 * k <= fast.stats()["kept"] <= 1.1 * k
        assert fast.stats()["delta"] >= 0.9 * exact.stats()["delta"]
        assert fast.stats()["delta"] == pytest.approx(exact.stats()["delta"], rel=1e-4)  # exact top-k here
