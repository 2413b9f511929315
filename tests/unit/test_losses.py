import torch
import torch.nn.functional as F
from torch import nn

from hpcgan.gan.losses import LOSSES, gradient_penalty, simultaneous_gradients


def pair():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), LinearCritic()


class LinearCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        return self.lin(torch.tanh(x)).squeeze(-1)


def test_simultaneous_gradient_is_both_gradients_at_the_same_point():
    G, D = pair()
    x, z = torch.randn(16, 2), torch.randn(16, 4)
    g_G, g_D, d_loss, g_loss = simultaneous_gradients(G, D, LOSSES.get("ns"), x, z)
    # reference: each player's own loss, differentiated separately at the same (theta, phi)
    fake = G(z)
    ref_d = F.softplus(-D(x)).mean() + F.softplus(D(fake.detach())).mean()
    ref_g = F.softplus(-D(fake)).mean()
    want_D = torch.autograd.grad(ref_d, list(D.parameters()))
    want_G = torch.autograd.grad(ref_g, list(G.parameters()))
    assert all(torch.allclose(a, b) for a, b in zip(g_D, want_D))
    assert all(torch.allclose(a, b) for a, b in zip(g_G, want_G))
    assert torch.isclose(d_loss, ref_d) and torch.isclose(g_loss, ref_g)


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    w = torch.tensor([3.0, 4.0])                     # ||grad D|| = 5 everywhere

    class Lin(nn.Module):
        def forward(self, x):
            return x @ w

    gp = gradient_penalty(Lin(), torch.randn(8, 2), torch.randn(8, 2), ())
    assert torch.isclose(gp, torch.tensor(16.0))     # (5 - 1)^2


def test_wgan_gp_losses():
    G, D = pair()
    x, z = torch.randn(16, 2), torch.randn(16, 4)
    _, _, d_loss, g_loss = simultaneous_gradients(G, D, LOSSES.get("wgan-gp"), x, z, gp_weight=0.0)
    fake = G(z)
    assert torch.isclose(d_loss, D(fake).mean() - D(x).mean())
    assert torch.isclose(g_loss, -D(fake).mean())


def test_one_critic_pass_over_real_and_fake_is_two_calls_of_it():
    """critic_outputs runs D once on both batches (so backward completes each D gradient at once);
    without batch statistics that is the same function, labels included."""
    from hpcgan.gan.losses import critic_outputs

    class Cond(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.embed = nn.Linear(2, 1), nn.Embedding(3, 2)

        def forward(self, x, y):
            return self.lin(torch.tanh(x) * self.embed(y)).squeeze(-1)

    torch.manual_seed(1)
    D, real, fake, y = Cond(), torch.randn(5, 2), torch.randn(5, 2), torch.tensor([0, 2, 1, 1, 0])
    d_real, d_fake = critic_outputs(D, real, fake, (y,))
    assert torch.allclose(d_real, D(real, y)) and torch.allclose(d_fake, D(fake, y))


def test_either_backward_order_gives_the_same_gradients_bit_for_bit():
    """--backward-order changes which backward pass runs first, never what it computes (every
    loss, the penalty's double backward included)."""
    G, D = pair()
    x, z = torch.randn(16, 2), torch.randn(16, 4)
    for loss in LOSSES.names():
        dg = simultaneous_gradients(G, D, LOSSES.get(loss), x, z, generator=torch.Generator().manual_seed(3))
        gd = simultaneous_gradients(G, D, LOSSES.get(loss), x, z, generator=torch.Generator().manual_seed(3),
                                    order="gd")
        assert all(torch.equal(a, b) for a, b in zip([*dg[0], *dg[1], *dg[2:]], [*gd[0], *gd[1], *gd[2:]])), loss


def test_the_backward_order_flag_offers_exactly_the_orders_the_step_knows():
    import dataclasses

    from hpcgan.config import CommConfig, choices_of
    from hpcgan.gan.losses import BACKWARD_ORDERS
    field = {f.name: f for f in dataclasses.fields(CommConfig)}["backward_order"]
    assert choices_of(field.metadata) == tuple(BACKWARD_ORDERS) and field.default in BACKWARD_ORDERS
    assert all(sorted(order) == ["D", "G"] for order in BACKWARD_ORDERS.values())
