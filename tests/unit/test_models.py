"""Image models: shapes, conditional variants, no batch-coupled layers, clear errors."""
import pytest
import torch
from torch import nn

from hpcgan.config import ModelConfig
from hpcgan.data import DataSpec
from hpcgan.errors import UsageError
from hpcgan.gan.models import MODELS, build_models

CASES = [("dcgan32", (1, 32, 32)), ("dcgan32", (3, 32, 32)), ("resnet32", (3, 32, 32)),
         ("resnet32", (1, 32, 32)), ("dcgan64", (3, 64, 64))]


@pytest.mark.parametrize("name, shape", CASES)
@pytest.mark.parametrize("conditional", [False, True])
def test_shapes_and_per_example_independence(name, shape, conditional):
    torch.manual_seed(0)
    G, D = build_models(DataSpec(shape, 10), ModelConfig(model=name, width=4, z_dim=8), conditional)
    y = (torch.tensor([3, 7, 1]),) if conditional else ()
    z = torch.randn(3, 8)
    x = G(z, *y)
    assert x.shape == (3, *shape) and float(x.detach().abs().max()) <= 1.0
    out = D(x, *y)
    assert out.shape == (3,)
    # no BatchNorm-like coupling: example 0 does not depend on the rest of the batch
    y0 = tuple(t[:1] for t in y)
    assert torch.allclose(G(z[:1], *y0), x[:1], atol=1e-6) and torch.allclose(D(x[:1], *y0), out[:1], atol=1e-5)
    mods = list(G.modules()) + list(D.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in mods)
    assert not list(G.buffers()) and not list(D.buffers())


def test_conditional_outputs_depend_on_the_label():
    torch.manual_seed(0)
    G, D = build_models(DataSpec((1, 32, 32), 10), ModelConfig(model="dcgan32", width=4, z_dim=8), True)
    z = torch.randn(2, 8).repeat(2, 1)
    y = torch.tensor([0, 0, 5, 5])
    x = G(z, y)
    assert not torch.allclose(x[0], x[2]) and not torch.allclose(D(x[:1], y[:1]), D(x[:1], y[2:3]))


@pytest.mark.parametrize("name, shape", [("dcgan32", (2,)), ("dcgan32", (3, 64, 64)), ("resnet32", (4, 32, 32)),
                                         ("dcgan64", (1, 32, 32))])
def test_wrong_data_shapes_are_usage_errors(name, shape):
    with pytest.raises(UsageError, match=name):
        MODELS.get(name)(DataSpec(shape, 10), ModelConfig(model=name, width=4), False)
