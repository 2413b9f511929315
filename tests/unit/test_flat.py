import pytest
import torch
from torch import nn

from hpcgan.gan.flat import FlatParams


def make():
    torch.manual_seed(0)
    return nn.Linear(3, 2), nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1))


def test_parameters_and_grads_are_views_of_one_buffer():
    g, d = make()
    before = [p.detach().clone() for p in list(g.parameters()) + list(d.parameters())]
    flat = FlatParams({"G": g, "D": d})
    assert len(flat) == sum(p.numel() for p in before) == 8 + 12 + 5
    assert torch.equal(flat.params, torch.cat([b.reshape(-1) for b in before]))
    flat.params.add_(1.0)
    assert torch.equal(g.weight, before[0] + 1)
    d[1].bias.grad.fill_(7.0)
    assert flat.grads[-1] == 7.0
    assert flat.ranges == {"G": slice(0, 8), "D": slice(8, 25)}
    assert flat.tensor_sizes("G") == [6, 2]


def test_in_place_optimizer_updates_the_flat_buffer():
    g, d = make()
    flat = FlatParams({"G": g, "D": d})
    opt = torch.optim.Adam(flat.param_list, lr=0.1)
    flat.grads.fill_(1.0)
    old = flat.params.clone()
    opt.step()
    assert torch.allclose(flat.params, old - 0.1, atol=1e-6)


def test_set_grads_writes_module_range():
    g, d = make()
    flat = FlatParams({"G": g, "D": d})
    flat.set_grads("D", [torch.full_like(p, 2.0) for p in d.parameters()])
    assert (flat.grads[flat.ranges["D"]] == 2).all() and (flat.grads[flat.ranges["G"]] == 0).all()


def test_shared_parameters_are_refused():
    g, _ = make()
    with pytest.raises(ValueError):
        FlatParams({"G": g, "D": g})
