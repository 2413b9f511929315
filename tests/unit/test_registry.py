import pytest

from hpcgan.errors import UsageError
from hpcgan.registry import Registry


def test_unknown_name_lists_valid_names_on_one_line():
    reg = Registry("widget")
    reg.register("b")(1)
    reg.register("a")(2)
    with pytest.raises(UsageError) as e:
        reg.get("c")
    assert str(e.value) == "unknown widget 'c'; valid: a, b"
    assert reg.get("a") == 2 and list(reg) == ["a", "b"] and "b" in reg


def test_double_registration_is_refused():
    reg = Registry("widget")
    reg.register("a")(1)
    with pytest.raises(ValueError):
        reg.register("a")(2)


def test_project_registries_reject_unknown_names():
    from hpcgan.algorithms import ALGORITHMS
    from hpcgan.comm import BACKENDS
    from hpcgan.data import DATASETS
    from hpcgan.gan.losses import LOSSES
    from hpcgan.gan.models import MODELS
    from hpcgan.gan.optim import OPTIMIZERS

    for reg, known in [(ALGORITHMS, "sync"), (BACKENDS, "mpi"), (DATASETS, "mog8"), (LOSSES, "ns"),
                       (MODELS, "mlp"), (OPTIMIZERS, "adam")]:
        assert known in reg
        with pytest.raises(UsageError, match=known):
            reg.get("nonsense")
