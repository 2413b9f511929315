"""Generator / discriminator pairs as plain ``nn.Module``s, looked up by ``--model``.

A builder takes the data spec, the model config and ``conditional`` and returns ``(G, D)``. G maps
z (and a label y for conditional models) to a sample; D maps a sample (and y) to one logit/critic
value per example. Models own no training logic.

* ``mlp``: any sample shape, images flattened (2-D mixtures, small digits).
* ``dcgan32`` / ``dcgan64``: DCGAN for (C, 32, 32) / (C, 64, 64) images.
  ``resnet32``: SNGAN-style ResNet for (C, 32, 32) images (``--width`` = base channels).
* Conditional variants: G concatenates a label embedding to z; D is a projection critic,
  D(x, y) = w^T h(x) + embed(y)^T h(x) (Miyato & Koyama 2018).
* No BatchNorm and no spectral norm anywhere: both keep per-rank buffers (running statistics,
  power-iteration vectors) outside the parameters, which would break bit-identical ranks and
  resumes and the WGAN-GP per-example penalty. Normalisation is layer norm (GroupNorm with one
  group), which depends on one example only.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..config import ModelConfig
from ..data import DataSpec
from ..errors import UsageError
from ..registry import Registry

def latent(n: int, z_dim: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """n standard-normal latent vectors z of the generators, drawn from ``generator``."""
    return torch.randn(n, z_dim, generator=generator, device=device)


ModelBuilder = Callable[[DataSpec, ModelConfig, bool], tuple[nn.Module, nn.Module]]
MODELS: Registry[ModelBuilder] = Registry("model")


class MLPGenerator(nn.Module):
    """z (and, if conditional, a learned label embedding concatenated to z) -> a sample of ``shape``."""

    def __init__(self, z_dim: int, width: int, shape: tuple[int, ...], depth: int = 3, num_classes: int = 0):
        super().__init__()
        self.shape = tuple(shape)
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes else None
        layers, d = [], z_dim * (2 if num_classes else 1)
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, math.prod(shape)))

    def forward(self, z, y=None):
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], dim=1)
        return self.net(z).view(-1, *self.shape)


class ProjectionCritic(nn.Module):
    """x -> ``features`` -> h (B, F); out = w^T h, plus embed(y)^T h when conditional (projection critic)."""

    def __init__(self, features: nn.Module, feat_dim: int, num_classes: int = 0):
        super().__init__()
        self.features, self.head = features, nn.Linear(feat_dim, 1)
        self.embed = nn.Embedding(num_classes, feat_dim) if num_classes else None

    def forward(self, x, y=None):
        h = self.features(x)
        out = self.head(h).squeeze(-1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(dim=1)
        return out


class MLPDiscriminator(ProjectionCritic):
    """sample -> one value; conditional: projection critic D(x, y) = psi(h(x)) + <embed(y), h(x)>.
    No normalization layers (WGAN-GP's penalty is per example)."""

    def __init__(self, shape: tuple[int, ...], width: int, depth: int = 3, num_classes: int = 0):
        layers, d = [nn.Flatten()], math.prod(shape)
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.LeakyReLU(0.2)]
            d = width
        super().__init__(nn.Sequential(*layers), d, num_classes)


@MODELS.register("mlp")
def build_mlp(spec: DataSpec, cfg: ModelConfig, conditional: bool = False) -> tuple[nn.Module, nn.Module]:
    """MLP pair for any sample shape (images are flattened): the 2-D mixtures, small digits.
    ``conditional`` adds a label embedding to G and a projection head to D."""
    classes = spec.num_classes if conditional else 0
    return (MLPGenerator(cfg.z_dim, cfg.width, spec.shape, num_classes=classes),
            MLPDiscriminator(spec.shape, cfg.width, num_classes=classes))


def layer_norm(channels: int) -> nn.Module:
    """Normalisation over (C, H, W) of each example; parameters only, no buffers."""
    return nn.GroupNorm(1, channels)


class ImageGenerator(nn.Module):
    """z (and y) -> Linear -> (channels, 4, 4) -> ``body`` -> image in [-1, 1]."""

    def __init__(self, z_dim: int, channels: int, body: nn.Module, num_classes: int = 0):
        super().__init__()
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes else None
        self.fc = nn.Linear(z_dim * (2 if num_classes else 1), channels * 16)
        self.channels, self.body = channels, body

    def forward(self, z, y=None):
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], dim=1)
        return torch.tanh(self.body(self.fc(z).view(-1, self.channels, 4, 4)))


def _image_spec(spec: DataSpec, name: str, size: int) -> int:
    """Channels of ``spec`` after checking it holds (C, size, size) images."""
    if len(spec.shape) != 3 or spec.shape[1:] != (size, size) or spec.shape[0] not in (1, 3):
        raise UsageError(f"the {name} model needs (1 or 3, {size}, {size}) images, got samples of shape {spec.shape}")
    return spec.shape[0]


def _dcgan(spec: DataSpec, cfg: ModelConfig, conditional: bool, size: int) -> tuple[nn.Module, nn.Module]:
    """DCGAN: stride-2 (transposed) 4x4 convolutions doubling/halving the resolution from/to 4x4."""
    c = _image_spec(spec, f"dcgan{size}", size)
    stages = {32: 3, 64: 4}[size]
    w = cfg.width
    chans = [w * 2 ** i for i in reversed(range(stages))]      # e.g. 4w, 2w, w for 32x32
    up: list[nn.Module] = [layer_norm(chans[0]), nn.ReLU()]
    for a, b in zip(chans, chans[1:]):
        up += [nn.ConvTranspose2d(a, b, 4, 2, 1), layer_norm(b), nn.ReLU()]
    up.append(nn.ConvTranspose2d(chans[-1], c, 4, 2, 1))
    down: list[nn.Module] = [nn.Conv2d(c, chans[-1], 4, 2, 1), nn.LeakyReLU(0.2)]
    for a, b in zip(reversed(chans), list(reversed(chans))[1:]):
        down += [nn.Conv2d(a, b, 4, 2, 1), layer_norm(b), nn.LeakyReLU(0.2)]
    down.append(nn.Flatten())
    k = spec.num_classes if conditional else 0
    G = ImageGenerator(cfg.z_dim, chans[0], nn.Sequential(*up), k)
    D = ProjectionCritic(nn.Sequential(*down), chans[0] * 16, k)
    return G, D


@MODELS.register("dcgan32")
def build_dcgan32(spec: DataSpec, cfg: ModelConfig, conditional: bool = False) -> tuple[nn.Module, nn.Module]:
    """DCGAN for 32x32 images with 1 or 3 channels; base width ``--width``."""
    return _dcgan(spec, cfg, conditional, 32)


@MODELS.register("dcgan64")
def build_dcgan64(spec: DataSpec, cfg: ModelConfig, conditional: bool = False) -> tuple[nn.Module, nn.Module]:
    """DCGAN for 64x64 images with 1 or 3 channels; base width ``--width``."""
    return _dcgan(spec, cfg, conditional, 64)


class GBlock(nn.Module):
    """Pre-activation up-sampling residual block: (LN, ReLU, up, conv3, LN, ReLU, conv3) + up(conv1)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(layer_norm(cin), nn.ReLU(), nn.Upsample(scale_factor=2),
                                  nn.Conv2d(cin, cout, 3, 1, 1), layer_norm(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1))
        self.skip = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 1))

    def forward(self, x):
        return self.body(x) + self.skip(x)


class DBlock(nn.Module):
    """Residual critic block: ([ReLU], conv3, ReLU, conv3, [avgpool]) + ([avgpool] conv1)."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool = False):
        super().__init__()
        pool = [nn.AvgPool2d(2)] if down else []
        self.body = nn.Sequential(*([] if first else [nn.ReLU()]), nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1), *pool)
        self.skip = nn.Sequential(*(pool + [nn.Conv2d(cin, cout, 1)] if first else [nn.Conv2d(cin, cout, 1)] + pool))

    def forward(self, x):
        return self.body(x) + self.skip(x)


class SumPool(nn.Module):
    def forward(self, x):
        return torch.relu(x).sum(dim=(2, 3))


@MODELS.register("resnet32")
def build_resnet32(spec: DataSpec, cfg: ModelConfig, conditional: bool = False) -> tuple[nn.Module, nn.Module]:
    """SNGAN-style ResNet for 32x32 images (3 up-blocks in G; 4 blocks, 2 down-sampling, in D),
    without spectral norm (see the module docstring); base width ``--width``."""
    c, w = _image_spec(spec, "resnet32", 32), cfg.width
    k = spec.num_classes if conditional else 0
    G = ImageGenerator(cfg.z_dim, w, nn.Sequential(GBlock(w, w), GBlock(w, w), GBlock(w, w), layer_norm(w),
                                                    nn.ReLU(), nn.Conv2d(w, c, 3, 1, 1)), k)
    D = ProjectionCritic(nn.Sequential(DBlock(c, w, True, first=True), DBlock(w, w, True), DBlock(w, w, False),
                                  DBlock(w, w, False), SumPool()), w, k)
    return G, D


def build_models(spec: DataSpec, cfg: ModelConfig, conditional: bool = False) -> tuple[nn.Module, nn.Module]:
    return MODELS.get(cfg.model)(spec, cfg, conditional)
