"""GAN losses (one registry, ``--loss``) and the two ways hpcgan differentiates them.

A loss maps the discriminator's outputs to (L_D, L_G); cond = the labels for conditional models:

* ``ns`` (non-saturating, binary cross-entropy with logits; the DC-CGAN loss of pcwgan's
  predecessor): L_D = E[softplus(-D(x))] + E[softplus(D(G(z)))], L_G = E[softplus(-D(G(z)))]
* ``wgan-gp``: L_D = E[D(G(z))] - E[D(x)] + lambda E[(||grad_xhat D(xhat)||_2 - 1)^2],
  xhat = eps x + (1 - eps) G(z), eps ~ U(0, 1) per example; L_G = -E[D(G(z))]
* ``wgan-clip``: the same L_D without the penalty; after every critic update each critic weight is
  clipped to [-c, c], c = 0.01. Only alternating algorithms apply it (a critic *update* is theirs).

:func:`simultaneous_gradients` evaluates both gradients at the same point (G and D are not updated
in between), as DQGAN, DPOSG and the sync baseline require; :class:`AlternatingPair` does the
critic and generator halves separately, as pcwgan and cwgan do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry


@dataclass(frozen=True)
class GanLoss:
    name: str
    critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]     # (D(x), D(G(z))) -> L_D, no penalty
    generator: Callable[[torch.Tensor], torch.Tensor]               # D(G(z)) -> L_G
    penalty: bool = False     # + gp_weight * gradient_penalty
    clip: float = 0.0         # > 0: critic weights clipped to [-clip, clip] after each critic update

    def critic_loss(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, d_real: torch.Tensor,
                    d_fake: torch.Tensor, cond: tuple, gp_weight: float,
                    generator: torch.Generator | None) -> torch.Tensor:
        loss = self.critic(d_real, d_fake)
        if self.penalty:
            loss = loss + gp_weight * gradient_penalty(D, real, fake, cond, generator)
        return loss


LOSSES: Registry[GanLoss] = Registry("loss")


def _register(loss: GanLoss) -> GanLoss:
    return LOSSES.register(loss.name)(loss)


def _wgan_critic(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return d_fake.mean() - d_real.mean()


def _wgan_generator(d_fake: torch.Tensor) -> torch.Tensor:
    return -d_fake.mean()


NS = _register(GanLoss("ns", lambda d_real, d_fake: F.softplus(-d_real).mean() + F.softplus(d_fake).mean(),
                       lambda d_fake: F.softplus(-d_fake).mean()))
WGAN_GP = _register(GanLoss("wgan-gp", _wgan_critic, _wgan_generator, penalty=True))
WGAN_CLIP = _register(GanLoss("wgan-clip", _wgan_critic, _wgan_generator, clip=0.01))


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: tuple,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """E[(||grad_xhat D(xhat)||_2 - 1)^2] on random interpolates of real and (detached) fake."""
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, generator=generator, device=real.device, dtype=real.dtype)
    xhat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(xhat, *cond).sum(), xhat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


#: ``--backward-order``: the order in which :func:`simultaneous_gradients` produces the networks' gradients
BACKWARD_ORDERS = {"dg": ("D", "G"), "gd": ("G", "D")}


def critic_outputs(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """(D(real), D(fake)) from one pass of D over the real and fake examples together.

    The same function as two calls, since no model keeps batch statistics (per-example norms,
    :mod:`.models`), but a different backward: with two calls, autograd runs one branch's whole
    backward before the other's (it goes by creation order), so no D gradient is complete until
    the second branch is on its way back -- about half of D's backward. In one pass each layer's
    gradient is complete when backward first reaches it, so D's gradients, and the exchange of
    the first buckets, start right after the forward (dcgan32: first D gradient at 0.26 of the
    compute instead of 0.5)."""
    n = real.shape[0]
    out = D(torch.cat([real, fake]), *(torch.cat([c, c]) for c in cond))
    return out[:n], out[n:]


def simultaneous_gradients(G: nn.Module, D: nn.Module, loss: GanLoss, real: torch.Tensor, z: torch.Tensor,
                           labels: torch.Tensor | None = None, gp_weight: float = 10.0,
                           generator: torch.Generator | None = None, order: str = "dg"):
    """(grads of L_G w.r.t. G, grads of L_D w.r.t. D, L_D, L_G), both at the current (theta, phi).

    ``order`` (``--backward-order``) says which of the two backward passes runs first: the same
    gradients either way, but a bucketed exchange can start the first network's buckets while the
    second's backward runs. D's first makes D's large middle layers ready early and leaves G's
    input layers for the very end; G's first makes all of G ready by about 0.6 of the compute
    (dcgan32) and D's last gradient is its small first layer."""
    cond = () if labels is None else (labels,)
    fake = G(z, *cond)
    d_real, d_fake = critic_outputs(D, real, fake, cond)
    d_loss = loss.critic_loss(D, real, fake, d_real, d_fake, cond, gp_weight, generator)
    g_loss = loss.generator(d_fake)
    if BACKWARD_ORDERS[order][0] == "D":
        g_D = torch.autograd.grad(d_loss, list(D.parameters()), retain_graph=True)
        g_G = torch.autograd.grad(g_loss, list(G.parameters()))
    else:
        g_G = torch.autograd.grad(g_loss, list(G.parameters()), retain_graph=True)
        g_D = torch.autograd.grad(d_loss, list(D.parameters()))
    return g_G, g_D, d_loss.detach(), g_loss.detach()


class AlternatingPair:
    """The critic and generator halves of one (G, D) pair, differentiated separately (alternating
    updates). Computes and writes gradients only: no optimizer, no data, no communication."""

    def __init__(self, G: nn.Module, D: nn.Module, loss: GanLoss, gp_weight: float):
        self.G, self.D, self.loss, self.gp_weight = G, D, loss, gp_weight

    def critic_backward(self, real: torch.Tensor, z: torch.Tensor, cond: tuple,
                        generator: torch.Generator | None) -> torch.Tensor:
        """D.grad <- grad_phi L_D on (real, G(z)); returns L_D (detached)."""
        with torch.no_grad():
            fake = self.G(z, *cond)
        loss = self.loss.critic_loss(self.D, real, fake, self.D(real, *cond), self.D(fake, *cond), cond,
                                     self.gp_weight, generator)
        _backward(loss, self.D)
        return loss.detach()

    def generator_backward(self, z: torch.Tensor, cond: tuple) -> torch.Tensor:
        """G.grad <- grad_theta L_G at G(z); D's gradients are left untouched. Returns L_G."""
        loss = self.loss.generator(self.D(self.G(z, *cond), *cond))
        _backward(loss, self.G)
        return loss.detach()

    @torch.no_grad()
    def after_critic_update(self) -> None:
        """Weight clipping (``wgan-clip``): phi <- clamp(phi, -c, c)."""
        if self.loss.clip > 0:
            for p in self.D.parameters():
                p.clamp_(-self.loss.clip, self.loss.clip)


def _backward(loss: torch.Tensor, module: nn.Module) -> None:
    """Write d loss / d params of ``module`` into their existing ``.grad`` (flat views stay intact)."""
    params = list(module.parameters())
    for p, g in zip(params, torch.autograd.grad(loss, params)):
        if p.grad is None:
            p.grad = g
        else:
            p.grad.copy_(g)
