"""Real gradients for compressor measurements: the simultaneous gradient F(x_0; xi) = [grad_theta
L_G ; grad_phi L_D] of one GAN training batch, as the flat buffer and per-tensor sizes a training
step hands to a compressor (no MPI, no communicator).

``real_gradient("dcgan32", "digits")`` is the buffer of the issue's top-k delta target: dcgan32 on
scikit-learn's digits at 32x32, initial weights (seed 0) and one batch of 64, non-saturating loss.
"""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..data import build_dataset
from ..gan.flat import FlatParams
from ..gan.losses import LOSSES, simultaneous_gradients
from ..gan.models import build_models, latent


def real_gradient(model: str = "dcgan32", data: str = "digits", batch: int = 64, seed: int = 0,
                  steps: int = 1) -> tuple[torch.Tensor, list[int]]:
    """(flat gradient, per-tensor sizes) after ``steps - 1`` plain SGD steps (lr 0.01) from the
    initial weights: step 1 is the gradient at initialisation, later ones are further into training."""
    dataset = build_dataset(data)
    cfg = ModelConfig(model=model)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G, D = build_models(dataset.spec, cfg, False)
    flat = FlatParams({"G": G, "D": D})
    loader = dataset.loader(batch, 0, 1, seed)
    for _ in range(steps):
        x, _ = next(loader)
        g_G, g_D, _, _ = simultaneous_gradients(G, D, LOSSES.get(cfg.loss), x, latent(x.shape[0], cfg.z_dim, g),
                                                None, cfg.gp_weight, g)
        flat.set_grads("G", g_G)
        flat.set_grads("D", g_D)
        flat.params.sub_(flat.grads, alpha=0.01)
    return flat.grads.clone(), flat.tensor_sizes()
