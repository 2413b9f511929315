import math

import numpy as np
import pytest
import torch

from hpcgan.data.base import grid_centers, mog8, mog25, ring_centers
from hpcgan.metrics.mog import mixture_metrics, mode_counts


def test_mixture_definitions():
    ring = mog8()
    assert ring.centers.shape == (8, 2) and ring.sigma == 0.02
    assert torch.allclose(ring.centers.norm(dim=1), torch.full((8,), 2.0))
    grid = mog25()
    assert grid.centers.shape == (25, 2) and grid.sigma == 0.05
    assert grid.centers.min() == -4 and grid.centers.max() == 4


def test_real_samples_cover_every_mode_with_the_closed_form_3_sigma_mass():
    ring = mog8()
    x, _ = ring.sample(20000, torch.Generator().manual_seed(0))
    m = mixture_metrics(mode_counts(x, ring.centers, ring.sigma))
    # a 2-D isotropic Gaussian puts 1 - exp(-9/2) = 0.98889 of its mass within 3 sigma
    assert m["modes_covered"] == 8 and m["mode_kl"] < 0.01
    assert m["hq_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.003)


def test_collapse_to_one_mode():
    ring = mog8()
    x = ring.centers[3].repeat(100, 1)
    m = mixture_metrics(mode_counts(x, ring.centers, ring.sigma))
    assert m == {"modes_covered": 1.0, "hq_fraction": 1.0, "mode_kl": pytest.approx(math.log(8))}


def test_far_samples_are_low_quality_and_cover_nothing():
    ring = mog8()
    x = torch.zeros(50, 2)
    counts = mode_counts(x, ring.centers, ring.sigma)
    assert counts[-1] == 50 and mixture_metrics(counts)["modes_covered"] == 0


def test_three_sigma_radius_and_one_percent_threshold():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    inside = torch.tensor([[0.059, 0.0]])      # 2.95 sigma from mode 0
    outside = torch.tensor([[10.061, 0.0]])    # 3.05 sigma from mode 1
    counts = mode_counts(torch.cat([inside, outside]), centers, 0.02)
    assert counts.tolist() == [1, 0, 1]
    # 1 of 100 samples in a mode covers it; 0 of 101 does not
    counts = np.array([1, 99, 0])
    assert mixture_metrics(counts)["modes_covered"] == 2
    assert mixture_metrics(np.array([0, 101, 0]))["modes_covered"] == 1


def test_counts_add_over_ranks():
    ring = mog8()
    x, _ = ring.sample(1000, torch.Generator().manual_seed(1))
    whole = mode_counts(x, ring.centers, ring.sigma)
    halves = mode_counts(x[:400], ring.centers, ring.sigma) + mode_counts(x[400:], ring.centers, ring.sigma)
    assert (whole == halves).all()
