"""Optimistic optimizers: the bilinear game, the exact update rules, parameters without grads."""
import math

import pytest
import torch

from hpcgan.config import OptimConfig
from hpcgan.gan.optim import OPTIMIZERS, OptimisticAdam, OptimisticSGD, build_optimizer


def play_bilinear(make_opt, steps: int, simultaneous_gda: bool = False) -> list[float]:
    """min_x max_y x*y from (1, 1): the gradient field is (y, -x); returns ||(x, y)|| per step."""
    x = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    y = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    opt = make_opt([x, y])
    dist = []
    for _ in range(steps):
        x.grad, y.grad = y.detach().clone(), -x.detach().clone()  # F(x, y) at the same point
        opt.step()
        dist.append(math.hypot(float(x.detach()), float(y.detach())))
    return dist


def test_omd_converges_on_bilinear_game_where_gda_diverges():
    lr = 0.1
    omd = play_bilinear(lambda p: OptimisticSGD(p, lr=lr), 500)
    gda = play_bilinear(lambda p: torch.optim.SGD(p, lr=lr), 500)
    start = math.sqrt(2)
    assert omd[-1] < 0.1 * start and omd[-1] < omd[100] < omd[10]
    assert gda[-1] > 10 * start and gda[-1] > gda[100] > gda[10]  # |1 + i lr| > 1 per step


def test_optimistic_adam_approaches_the_bilinear_solution():
    dist = play_bilinear(lambda p: OptimisticAdam(p, lr=0.01, betas=(0.5, 0.9)), 3000)
    assert dist[-1] < 0.2 * math.sqrt(2)


def test_omd_rule_is_exact():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = OptimisticSGD([p], lr=0.5)
    g0, g1 = torch.tensor([1.0, -1.0], dtype=torch.float64), torch.tensor([3.0, 0.5], dtype=torch.float64)
    p.grad = g0.clone()
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([1.0, 2.0], dtype=torch.float64) - 2 * 0.5 * g0)  # g_{-1} = 0
    before = p.detach().clone()
    p.grad = g1.clone()
    opt.step()
    assert torch.allclose(p.detach(), before - 2 * 0.5 * g1 + 0.5 * g0, rtol=0, atol=1e-15)


def test_optimistic_adam_rule_is_exact():
    b1, b2, eps, lr = 0.5, 0.9, 1e-8, 0.1
    p = torch.nn.Parameter(torch.tensor([0.3], dtype=torch.float64))
    opt = OptimisticAdam([p], lr=lr, betas=(b1, b2), eps=eps)
    x, m, v, u_prev = 0.3, 0.0, 0.0, 0.0
    for t, g in enumerate([0.7, -0.2, 1.5], start=1):
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1 ** t)) / (math.sqrt(v / (1 - b2 ** t)) + eps)
        x = x - 2 * lr * u + lr * u_prev
        u_prev = u
        assert float(p.detach()) == pytest.approx(x, abs=1e-14)


@pytest.mark.parametrize("name", ["omd", "oadam", "adam"])
def test_parameters_without_grads_are_skipped(name):
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(2))
    opt = build_optimizer([a, b], OptimConfig(optimizer=name, lr=0.1))
    a.grad = torch.ones(3)
    opt.step()  # b.grad is None: no error, b untouched
    assert torch.equal(b.detach(), torch.ones(2)) and not torch.equal(a.detach(), torch.ones(3))
    assert {"omd", "oadam", "adam"} <= set(OPTIMIZERS.names())


@pytest.mark.parametrize("name", ["omd", "oadam"])
def test_state_dict_round_trip_continues_identically(name):
    def run(reload: bool):
        p = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        opt = build_optimizer([p], OptimConfig(optimizer=name, lr=0.05))
        for k in range(6):
            if reload and k == 3:
                state = opt.state_dict()
                opt = build_optimizer([p], OptimConfig(optimizer=name, lr=0.05))
                opt.load_state_dict(state)
            p.grad = torch.tensor([0.5 * k - 1.0, 0.3])
            opt.step()
        return p.detach().clone()

    assert torch.equal(run(False), run(True))
