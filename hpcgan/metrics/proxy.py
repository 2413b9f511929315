"""Offline proxy metrics: hpcgan's own small classifier, trained on the run's dataset.

NOT comparable with published IS/FID numbers: every metric it gives is prefixed ``proxy_``.
* proxy_fid: FID on the classifier's penultimate features (128-d);
* proxy_is: IS on its class probabilities;
* proxy_class_consistency: fraction of conditional samples G(z, c) classified as c.

``hpcgan eval --train-proxy --data NAME`` trains it on a fixed 80% of the images, measures the
accuracy on the held-out 20%, and saves ``proxy-<dataset digest>.pt`` (weights, architecture,
dataset digest, test accuracy) with its SHA-256 in ``<file>.sha256``, in the dataset's home
(next to its HDF5 file, or the hpcgan cache for built-in datasets). Loading checks that digest and
that the classifier was trained on this very dataset.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from ..log import Progress, get_logger
from .features import Extractor
from .files import sha256_file, verify_sha256
from .reference import dataset_digest, dataset_home, take

HELD_OUT = 0.2
PROXY_ENV = "HPCGAN_PROXY"


def block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class Classifier(nn.Module):
    """Three conv-BN-ReLU blocks -> global average pool (the 4*width-d features) -> linear logits."""

    def __init__(self, channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.arch = {"channels": channels, "num_classes": num_classes, "width": width}
        w = width
        self.body = nn.Sequential(
            *block(channels, w), nn.MaxPool2d(2),
            *block(w, 2 * w), nn.MaxPool2d(2),
            *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return f, self.head(f)


class ProxyExtractor(Extractor):
    prefix = "proxy_"
    dataset_classes = True

    def __init__(self, net: Classifier, digest: str, meta: dict | None = None,
                 device: torch.device = torch.device("cpu")):
        self.net = net.eval().to(device)
        self.digest, self.meta, self.device = digest, meta or {}, device
        self.dim, self.num_classes = 4 * net.arch["width"], net.arch["num_classes"]

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x)


def default_path(dataset) -> Path:
    return dataset_home(dataset) / f"proxy-{dataset_digest(dataset)[:16]}.pt"


def split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (train, held-out) index split of n samples."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - HELD_OUT)))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


@torch.no_grad()
def accuracy(net: nn.Module, dataset, idx: np.ndarray, batch: int = 512) -> float:
    net.eval()
    hits = 0
    for chunk in np.array_split(idx, max(1, len(idx) // batch)):
        x, y = take(dataset, chunk)
        hits += int((net(x)[1].argmax(dim=1) == y).sum())
    return hits / len(idx)


def train_proxy(dataset, epochs: int = 10, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                width: int = 32) -> tuple[Classifier, float]:
    """Train the classifier on the fixed 80% split; return it with its held-out accuracy."""
    log = get_logger()
    torch.manual_seed(seed)
    net = Classifier(dataset.spec.shape[0], dataset.spec.num_classes, width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    train_idx, test_idx = split(len(dataset.labels), seed)
    rng = np.random.default_rng(seed + 1)
    batches = max(1, len(train_idx) // batch_size)
    progress = Progress("proxy training", epochs * batches, "batches")
    for epoch in range(epochs):
        net.train()
        t0 = time.perf_counter()
        for i, chunk in enumerate(np.array_split(rng.permutation(train_idx), batches)):
            progress.update(epoch * batches + i)
            x, y = take(dataset, chunk)
            x = _jitter(x, rng)
            loss = nn.functional.cross_entropy(net(x)[1], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        log.info("proxy epoch %d/%d  loss %.4f  %.1fs", epoch + 1, epochs, loss.item(), time.perf_counter() - t0)
    return net.eval(), accuracy(net, dataset, test_idx)


def _jitter(x: torch.Tensor, rng: np.random.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (one shift per batch; cheap augmentation)."""
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
    return torch.roll(x, shifts=(int(dy), int(dx)), dims=(2, 3))


def save_proxy(net: Classifier, dataset, test_accuracy: float, path: Path) -> str:
    """Write weights + metadata to ``path`` and its SHA-256 to ``path.sha256``; return the digest."""
    meta = {"dataset_digest": dataset_digest(dataset), "test_accuracy": test_accuracy,
            "held_out_fraction": HELD_OUT, "arch": net.arch,
            "note": "hpcgan proxy classifier: metrics from it are not comparable with published IS/FID"}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "meta": meta}, path)
    digest = sha256_file(path)
    Path(str(path) + ".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def load_proxy(dataset, path: str | Path | None = None, device: torch.device = torch.device("cpu"), *,
               data: str) -> ProxyExtractor:
    """The proxy classifier for ``dataset`` (``--data`` ``data``; default location unless ``path``),
    checksum verified."""
    path = Path(path) if path else default_path(dataset)
    how = f"Train it with: hpcgan eval --train-proxy --data {data} (writes {default_path(dataset)})."
    sidecar = Path(str(path) + ".sha256")
    if not sidecar.is_file():
        raise UsageError(f"proxy classifier checksum {sidecar} not found. {how}")
    verify_sha256(path, sidecar.read_text().split()[0], "proxy classifier", how)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    meta = saved["meta"]
    if meta["dataset_digest"] != dataset_digest(dataset):
        raise UsageError(f"proxy classifier {path} was trained on another dataset. {how}")
    net = Classifier(**meta["arch"])
    net.load_state_dict(saved["state_dict"])
    return ProxyExtractor(net, sha256_file(path), meta, device)


def describe(extractor: ProxyExtractor) -> str:
    return json.dumps({k: v for k, v in extractor.meta.items() if k != "arch"})
