"""The alternating critic loop shared by pcwgan and cwgan (docs/ALGORITHMS.md section 3).

One training step = n_critic critic updates, then one generator update (not simultaneous):
    for i in 1..n_critic:   phi <- Adam(phi, avg(grad_phi L_D(theta, phi; x_i, z_i)))
    theta <- Adam(theta, avg(grad_theta L_G(theta, phi; z)))
with the losses of ``--loss`` (:mod:`hpcgan.gan.losses`). ``average(name)`` averages network
``name``'s gradient over ranks (cwgan) or does nothing (pcwgan, communication-free).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..gan.losses import AlternatingPair
from ..results.timer import PhaseTimer


def alternating_step(pair: AlternatingPair, critic_batches: Iterable[tuple[torch.Tensor, tuple]], gen_cond: Callable[[int], tuple],
                     latent: Callable[[int], torch.Tensor], noise: torch.Generator,
                     opt_D: torch.optim.Optimizer, opt_G: torch.optim.Optimizer, timer: PhaseTimer,
                     consumed: Callable[[int, int], None], updated: Callable[[int, int], None],
                     average: Callable[[str], None] = lambda name: None) -> tuple[torch.Tensor, torch.Tensor]:
    """One WGAN iteration, phases timed; returns (last L_D, L_G). The generator half draws a batch
    as large as the first critic batch, conditioned on ``gen_cond(n)`` (``()`` if unconditional).
    ``consumed(real, fake)`` counts the samples: every critic batch of reals with as many fakes,
    then the generator's fakes; ``updated(generator, critic)`` the updates: one per critic batch,
    then one of the generator."""
    b = None
    for real, cond in critic_batches:
        b = b or len(real)
        consumed(len(real), len(real))
        with timer("compute"):
            d_loss = pair.critic_backward(real, latent(len(real)), cond, noise)
        average("D")
        with timer("update"):
            opt_D.step()
            pair.after_critic_update()
        updated(0, 1)
    consumed(0, b)
    with timer("compute"):
        cond = gen_cond(b)
        g_loss = pair.generator_backward(latent(b), cond)
    average("G")
    with timer("update"):
        opt_G.step()
    updated(1, 0)
    return d_loss, g_loss
