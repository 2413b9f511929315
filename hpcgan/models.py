"""Generator / discriminator pairs as plain ``nn.Module``s, looked up by ``--model``.

A builder takes the data spec and the model config and returns ``(G, D)``. G maps z (and a label
for conditional models) to a sample; D maps a sample (and label) to one logit/critic value per
example. Models own no training logic.
"""
from __future__ import annotations

import math
from typing import Callable

from torch import nn

from .config import ModelConfig
from .data import DataSpec
from .errors import UsageError
from .registry import Registry

ModelBuilder = Callable[[DataSpec, ModelConfig, bool], tuple[nn.Module, nn.Module]]
MODELS: Registry[ModelBuilder] = Registry("model")


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int, width: int, out_dim: int, depth: int = 3):
        super().__init__()
        layers, d = [], z_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, out_dim))

    def forward(self, z):
        return self.net(z)


class MLPDiscriminator(nn.Module):
    def __init__(self, in_dim: int, width: int, depth: int = 3):
        super().__init__()
        layers, d = [], in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.LeakyReLU(0.2)]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


@MODELS.register("mlp")
def build_mlp(spec: DataSpec, cfg: ModelConfig, conditional: bool = False) -> tuple[nn.Module, nn.Module]:
    """MLP pair for low-dimensional data such as the 2-D Gaussian mixtures; on images it works on
    flattened pixels (the classic MLP GAN on MNIST-like digits)."""
    if conditional:
        raise UsageError("the mlp model has no conditional variant")
    dim = math.prod(spec.shape)
    G, D = MLPGenerator(cfg.z_dim, cfg.width, dim), MLPDiscriminator(dim, cfg.width)
    if len(spec.shape) > 1:
        G, D = nn.Sequential(G, nn.Unflatten(1, spec.shape)), nn.Sequential(nn.Flatten(), D)
    return G, D


def build_models(spec: DataSpec, cfg: ModelConfig, conditional: bool = False) -> tuple[nn.Module, nn.Module]:
    return MODELS.get(cfg.model)(spec, cfg, conditional)
