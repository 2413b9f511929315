"""Local update rules, looked up by ``--optimizer``. Optimizers do arithmetic only: they never
communicate; the algorithm decides which gradient they see (ALGORITHMS.md section 0).

* ``omd`` (optimistic gradient, single call):  x_{t+1} = x_t - 2 eta g_t + eta g_{t-1},  g_{-1} = 0.
* ``oadam`` (optimistic Adam): m_t = b1 m_{t-1} + (1-b1) g_t, v_t = b2 v_{t-1} + (1-b2) g_t^2,
  u_t = m_hat_t / (sqrt(v_hat_t) + eps);  x_{t+1} = x_t - 2 eta u_t + eta u_{t-1},  u_{-1} = 0.
* ``adam``: torch's Adam.

Parameters whose ``.grad`` is None are skipped (their state is left as it was); a step never aborts.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from .config import OptimConfig
from .registry import Registry

OptimizerBuilder = Callable[[Iterable[torch.nn.Parameter], OptimConfig], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")


class OptimisticSGD(torch.optim.Optimizer):
    """OMD: x_{t+1} = x_t - 2 eta g_t + eta g_{t-1}; state ``prev`` holds g_{t-1}."""

    def __init__(self, params, lr: float = 1e-3):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            lr = group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                g = p.grad.detach()
                if "prev" in state:
                    p.add_(g, alpha=-2 * lr).add_(state["prev"], alpha=lr)
                    state["prev"].copy_(g)
                else:  # g_{-1} = 0
                    p.add_(g, alpha=-2 * lr)
                    state["prev"] = g.clone()
        return loss


class OptimisticAdam(torch.optim.Optimizer):
    """Optimistic Adam: x_{t+1} = x_t - 2 eta u_t + eta u_{t-1}, u_t = m_hat_t / (sqrt(v_hat_t) + eps)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.5, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.detach()
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                    state["u_prev"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                state["m"].mul_(b1).add_(g, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                m_hat = state["m"] / (1 - b1 ** t)
                v_hat = state["v"] / (1 - b2 ** t)
                u = m_hat.div_(v_hat.sqrt_().add_(eps))
                p.add_(u, alpha=-2 * lr).add_(state["u_prev"], alpha=lr)
                state["u_prev"].copy_(u)
        return loss


@OPTIMIZERS.register("adam")
def adam(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


@OPTIMIZERS.register("omd")
def omd(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    return OptimisticSGD(params, lr=cfg.lr)


@OPTIMIZERS.register("oadam")
def oadam(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    return OptimisticAdam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.optimizer)(params, cfg)
