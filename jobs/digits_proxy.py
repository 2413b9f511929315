"""A small digits classifier for the pcwgan-vs-cwgan experiment (stand-in until hpcgan.metrics has
its proxy classifier). Offline proxies, not comparable to published numbers:

* class-consistency: fraction of samples generated for label c that the classifier labels c;
* classifier-FID: Frechet distance ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between
  the classifier's penultimate features (64-d) of real digits and of samples, in float64.

The classifier is trained on a seeded 80% split of the digits and its held-out accuracy is reported.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from torch import nn


class DigitsNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU())
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        return self.head(self.features(x))


def train_classifier(images: torch.Tensor, labels: torch.Tensor, seed: int = 0, epochs: int = 15):
    """(classifier, held-out accuracy) from a seeded 80/20 split."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=g)
    cut = int(0.8 * len(labels))
    tr, te = perm[:cut], perm[cut:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        for idx in tr[torch.randperm(len(tr), generator=g)].split(64):
            loss = nn.functional.cross_entropy(net(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(images[te]).argmax(1) == labels[te]).float().mean())
    return net, acc


@torch.no_grad()
def proxy_metrics(net: DigitsNet, real: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor) -> dict:
    f_real, f_fake = net.features(real).double().numpy(), net.features(fake).double().numpy()
    consistency = float((net.head(net.features(fake)).argmax(1) == fake_labels).float().mean())
    return {"classifier_fid": frechet(f_real, f_fake), "class_consistency": consistency}


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * np.real(root)))
