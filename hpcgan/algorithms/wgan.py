"""Alternating Wasserstein-GAN updates shared by pcwgan and cwgan (ALGORITHMS.md section 3).

One training step = n_critic critic updates, then one generator update (not simultaneous):
    for i in 1..n_critic:   phi <- Adam(phi, grad_phi L_D(theta, phi; x_i, z_i))
    theta <- Adam(theta, grad_theta L_G(theta, phi; z))
``--wgan-variant`` picks the losses (cond = the labels for conditional models, else nothing):
* gp   L_D = E[D(G(z))] - E[D(x)] + lambda E[(||grad_xhat D(xhat)||_2 - 1)^2], xhat = eps x + (1-eps) G(z);
       L_G = -E[D(G(z))]
* clip the same L_D without the penalty, then every critic weight is clipped to [-c, c], c = 0.01
* bce  the predecessor's DC-CGAN loss: L_D = E[softplus(-D(x))] + E[softplus(D(G(z)))],
       L_G = E[softplus(-D(G(z)))]  (binary cross-entropy with logits, non-saturating G)
:class:`WganPair` only computes and writes gradients; the caller averages them (cwgan) or not
(pcwgan), and steps the optimizers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import gradient_penalty

CLIP = 0.01          # weight-clipping bound c
VARIANTS = ("gp", "clip", "bce")


class WganPair:
    """Loss and gradient arithmetic for one (G, D) pair; holds no optimizer and no data."""

    def __init__(self, G: nn.Module, D: nn.Module, variant: str, gp_weight: float):
        if variant not in VARIANTS:
            raise ValueError(f"unknown wgan variant {variant!r}; valid: {', '.join(VARIANTS)}")
        self.G, self.D, self.variant, self.gp_weight = G, D, variant, gp_weight

    def critic_backward(self, real: torch.Tensor, z: torch.Tensor, cond: tuple,
                        generator: torch.Generator) -> torch.Tensor:
        """D.grad <- grad_phi L_D on (real, G(z)); returns L_D (detached)."""
        with torch.no_grad():
            fake = self.G(z, *cond)
        d_real, d_fake = self.D(real, *cond), self.D(fake, *cond)
        if self.variant == "bce":
            loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        else:
            loss = d_fake.mean() - d_real.mean()
            if self.variant == "gp":
                loss = loss + self.gp_weight * gradient_penalty(self.D, real, fake, cond, generator)
        _backward(loss, self.D)
        return loss.detach()

    def generator_backward(self, z: torch.Tensor, cond: tuple) -> torch.Tensor:
        """G.grad <- grad_theta L_G at G(z); D's gradients are left untouched. Returns L_G."""
        d_fake = self.D(self.G(z, *cond), *cond)
        loss = F.softplus(-d_fake).mean() if self.variant == "bce" else -d_fake.mean()
        _backward(loss, self.G)
        return loss.detach()

    @torch.no_grad()
    def after_critic_update(self) -> None:
        """Weight clipping (variant clip): phi <- clamp(phi, -c, c)."""
        if self.variant == "clip":
            for p in self.D.parameters():
                p.clamp_(-CLIP, CLIP)


def _backward(loss: torch.Tensor, module: nn.Module) -> None:
    """Write d loss / d params of ``module`` into their existing ``.grad`` (flat views stay intact)."""
    params = list(module.parameters())
    for p, g in zip(params, torch.autograd.grad(loss, params)):
        if p.grad is None:
            p.grad = g
        else:
            p.grad.copy_(g)
