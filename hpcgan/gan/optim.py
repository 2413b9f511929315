"""Local update rules, looked up by ``--optimizer``. Optimizers do arithmetic only: they never
communicate; the algorithm decides which gradient they see (docs/ALGORITHMS.md section 0).

* ``omd`` (optimistic gradient, single call):  x_{t+1} = x_t - 2 eta g_t + eta g_{t-1},  g_{-1} = 0.
* ``oadam`` (optimistic Adam): m_t = b1 m_{t-1} + (1-b1) g_t, v_t = b2 v_{t-1} + (1-b2) g_t^2,
  u_t = m_hat_t / (sqrt(v_hat_t) + eps);  x_{t+1} = x_t - 2 eta u_t + eta u_{t-1},  u_{-1} = 0.
* ``adam``: torch's Adam.

Adam's moment arithmetic exists once (:func:`adam_direction`): OptimisticAdam applies it per
parameter, :class:`Direction` to a flat vector for algorithms that communicate their local step
(DPOSG, DQGAN).

Parameters whose ``.grad`` is None are skipped (their state is left as it was); a step never aborts.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..config import OptimConfig
from ..registry import Registry

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


def adam_direction(g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int, b1: float, b2: float,
                   eps: float) -> torch.Tensor:
    """Adam's arithmetic, the one copy in hpcgan: update the moments m, v in place with gradient g
    at step t >= 1 and return the direction u_t = m_hat_t / (sqrt(v_hat_t) + eps) (a new tensor)."""
    m.mul_(b1).add_(g, alpha=1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    v_hat = v / (1 - b2 ** t)
    return (m / (1 - b1 ** t)).div_(v_hat.sqrt_().add_(eps))


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
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                    state["u_prev"] = torch.zeros_like(p)
                state["step"] += 1
                u = adam_direction(p.grad.detach(), state["m"], state["v"], state["step"], b1, b2, eps)
                p.add_(u, alpha=-2 * lr).add_(state["u_prev"], alpha=lr)
                state["u_prev"].copy_(u)
        return loss


class Direction:
    """The local update direction d_t of one flat vector, from its gradient g_t, for algorithms
    that apply (and communicate) the step themselves: d = g for OMD; for Adam and optimistic Adam
    the rank's own Adam direction m_hat / (sqrt(v_hat) + eps), moments kept here, never shared."""

    def __init__(self, cfg: OptimConfig, like: torch.Tensor):
        self.cfg, self.adam = cfg, cfg.optimizer in ("adam", "oadam")
        self.optimistic = cfg.optimizer in ("omd", "oadam")
        self.m = torch.zeros_like(like) if self.adam else None
        self.v = torch.zeros_like(like) if self.adam else None
        self.t = 0

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """d_t of the whole vector (one step)."""
        self.begin()
        return self.of(g, slice(None))

    def begin(self) -> None:
        """A new step: the next :meth:`of` calls are step t + 1."""
        self.t += 1

    def of(self, g: torch.Tensor, part: slice) -> torch.Tensor:
        """d_t of the values ``part`` of the vector, whose gradient is ``g`` (the step's parts may
        come one by one, as backward produces them: the arithmetic is elementwise)."""
        if not self.adam:
            return g.clone()
        c = self.cfg
        return adam_direction(g, self.m[part], self.v[part], self.t, c.beta1, c.beta2, c.eps)

    def state_dict(self) -> dict:
        return {"t": self.t, **({"m": self.m.clone(), "v": self.v.clone()} if self.adam else {})}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])
        if self.adam:
            self.m, self.v = state["m"].clone(), state["v"].clone()


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
