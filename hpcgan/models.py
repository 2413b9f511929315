"""Generator / discriminator pairs as plain ``nn.Module``s, looked up by ``--model``.

A builder takes the data spec and the model config and returns ``(G, D)``. G maps z (and a label
for conditional models) to a sample; D maps a sample (and label) to one logit/critic value per
example. Models own no training logic.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .config import ModelConfig
from .data import DataSpec
from .registry import Registry

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


class MLPDiscriminator(nn.Module):
    """sample -> one value; conditional: projection critic D(x, y) = psi(h(x)) + <embed(y), h(x)>.
    No normalization layers (WGAN-GP's penalty is per example)."""

    def __init__(self, shape: tuple[int, ...], width: int, depth: int = 3, num_classes: int = 0):
        super().__init__()
        layers, d = [nn.Flatten()], math.prod(shape)
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.LeakyReLU(0.2)]
            d = width
        self.body, self.head = nn.Sequential(*layers), nn.Linear(d, 1)
        self.embed = nn.Embedding(num_classes, d) if num_classes else None

    def forward(self, x, y=None):
        h = self.body(x)
        out = self.head(h).squeeze(-1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(dim=1)
        return out


@MODELS.register("mlp")
def build_mlp(spec: DataSpec, cfg: ModelConfig, conditional: bool = False) -> tuple[nn.Module, nn.Module]:
    """MLP pair for any sample shape (images are flattened): the 2-D mixtures, small digits.
    ``conditional`` adds a label embedding to G and a projection head to D."""
    classes = spec.num_classes if conditional else 0
    return (MLPGenerator(cfg.z_dim, cfg.width, spec.shape, num_classes=classes),
            MLPDiscriminator(spec.shape, cfg.width, num_classes=classes))


def build_models(spec: DataSpec, cfg: ModelConfig, conditional: bool = False) -> tuple[nn.Module, nn.Module]:
    return MODELS.get(cfg.model)(spec, cfg, conditional)
