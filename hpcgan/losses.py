"""GAN losses and the simultaneous gradient field F(x; xi) = [grad_theta L_G ; grad_phi L_D].

A loss maps discriminator outputs to (L_D, L_G):

* ``ns`` (non-saturating): L_D = E[softplus(-D(x))] + E[softplus(D(G(z)))], L_G = E[softplus(-D(G(z)))]
* ``wgan-gp``: L_D = E[D(G(z))] - E[D(x)] + lambda E[(||grad_xhat D(xhat)||_2 - 1)^2],
  xhat = eps x + (1 - eps) G(z), eps ~ U(0, 1) per example; L_G = -E[D(G(z))]

:func:`simultaneous_gradients` evaluates both gradients at the same point (G and D are not
updated in between), as DQGAN, DPOSG and the sync baseline require.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry


@dataclass
class LossInputs:
    D: nn.Module
    real: torch.Tensor
    fake: torch.Tensor          # G(z), still attached to G's graph
    d_real: torch.Tensor
    d_fake: torch.Tensor
    cond: tuple                 # (labels,) for conditional models, else ()
    gp_weight: float
    generator: torch.Generator | None


LossFn = Callable[[LossInputs], tuple[torch.Tensor, torch.Tensor]]
LOSSES: Registry[LossFn] = Registry("loss")


@LOSSES.register("ns")
def non_saturating(a: LossInputs) -> tuple[torch.Tensor, torch.Tensor]:
    d_loss = F.softplus(-a.d_real).mean() + F.softplus(a.d_fake).mean()
    return d_loss, F.softplus(-a.d_fake).mean()


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: tuple,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """E[(||grad_xhat D(xhat)||_2 - 1)^2] on random interpolates of real and (detached) fake."""
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, generator=generator, device=real.device, dtype=real.dtype)
    xhat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(xhat, *cond).sum(), xhat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


@LOSSES.register("wgan-gp")
def wgan_gp(a: LossInputs) -> tuple[torch.Tensor, torch.Tensor]:
    gp = gradient_penalty(a.D, a.real, a.fake, a.cond, a.generator)
    return a.d_fake.mean() - a.d_real.mean() + a.gp_weight * gp, -a.d_fake.mean()


def simultaneous_gradients(G: nn.Module, D: nn.Module, loss: LossFn, real: torch.Tensor, z: torch.Tensor,
                           labels: torch.Tensor | None = None, gp_weight: float = 10.0,
                           generator: torch.Generator | None = None):
    """(grads of L_G w.r.t. G, grads of L_D w.r.t. D, L_D, L_G), both at the current (theta, phi)."""
    cond = () if labels is None else (labels,)
    fake = G(z, *cond)
    inputs = LossInputs(D, real, fake, D(real, *cond), D(fake, *cond), cond, gp_weight, generator)
    d_loss, g_loss = loss(inputs)
    g_D = torch.autograd.grad(d_loss, list(D.parameters()), retain_graph=True)
    g_G = torch.autograd.grad(g_loss, list(G.parameters()))
    return g_G, g_D, d_loss.detach(), g_loss.detach()
