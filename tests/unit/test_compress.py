"""Compressors: measured delta, round-trip shapes, bytes on the wire, error-feedback telescoping."""
import math
import os
import shlex
import shutil

import numpy as np
import pytest
import torch

from hpcgan.compress import bits, sign
from hpcgan.compress import COMPRESSORS, build_compressor
from hpcgan.compress.feedback import ErrorFeedback
from hpcgan.compress.qsgd import QSGD
from hpcgan.compress.sparse import RandK
from hpcgan.config import CommConfig
from hpcgan.errors import UsageError

NAMES = ["identity", "fp16", "bf16", "sign", "topk", "randk", "qsgd"]
RANDOM = {"randk", "qsgd"}
SIZES = [300, 7, 1, 693]  # parameter tensors of a flat buffer, d = 1001 (not a multiple of 8)
D = sum(SIZES)


def make(name, **kw):
    return build_compressor(CommConfig(compressor=name, **kw))


def test_every_compressor_is_registered_and_unknown_names_fail():
    assert set(NAMES) <= set(COMPRESSORS.names())
    with pytest.raises(UsageError, match="valid: .*sign"):
        make("nope")
    with pytest.raises(UsageError, match="ratio"):
        make("topk", ratio=1.5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dist", ["normal", "heavy"])
def test_measured_delta_bound(name, dist):
    """||Q(x) - x||^2 <= (1 - delta) ||x||^2; for random compressors, on average over draws."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(D, generator=g)
    if dist == "heavy":
        x = x**3  # a few large coordinates
    torch.manual_seed(0)
    c = make(name, ratio=0.05, levels=4)
    draws = 50 if name in RANDOM else 1
    err = np.mean([float((c.decompress(*c.compress(x, SIZES)) - x).pow(2).sum()) for _ in range(draws)])
    bound = (1 - c.delta(D)) * float(x.pow(2).sum())
    slack = 1.08 if name in RANDOM else 1 + 1e-6
    assert err <= bound * slack, f"{name}: {err} > {bound}"
    assert 0 < c.delta(D) <= 1


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_shape_dtype(name):
    x = torch.randn(13, 77)
    c = make(name, ratio=0.1)
    payload, ctx = c.compress(x, [13 * 77])
    y = c.decompress(payload, ctx)
    assert y.shape == x.shape and y.dtype == x.dtype
    z = torch.zeros(40)
    assert torch.all(c.decompress(*c.compress(z, [40])) == 0), "zero compresses to zero"


@pytest.mark.parametrize("name", NAMES)
def test_payload_shapes_depend_only_on_the_input_length(name):
    """What lets the communicator check payload sizes once per buffer instead of every step."""
    c = make(name, ratio=0.05, levels=4)
    shapes = [[(t.shape, t.dtype) for t in c.compress(x, SIZES)[0]]
              for x in (torch.randn(D), torch.zeros(D), torch.randn(D) ** 5)]
    assert shapes[0] == shapes[1] == shapes[2]


@pytest.mark.parametrize("name", NAMES)
def test_decompress_add_equals_adding_the_decompressed_payload(name):
    c = make(name, ratio=0.05, levels=4)
    payload, ctx = c.compress(torch.randn(D), SIZES)
    base = torch.randn(D)
    want = base + c.decompress(payload, ctx)
    got = base.clone()
    assert c.decompress_add(payload, ctx, got) is got
    assert torch.equal(got, want)
    if not c.summable:
        assert c.decompress(payload, ctx).data_ptr() not in {t.data_ptr() for t in payload}


def test_sign_matches_the_formula_per_tensor():
    x = torch.randn(D)
    x[5] = 0.0
    c = make("sign")
    y = c.decompress(*c.compress(x, SIZES))
    want = torch.cat([torch.where(t < 0, -1.0, 1.0) * t.abs().sum() / t.numel() for t in x.split(SIZES)])
    nonzero = x != 0
    torch.testing.assert_close(y[nonzero], want[nonzero])
    torch.testing.assert_close(y[5].abs(), want[5].abs())   # a zero gets the scale with a random sign
    err = float((y - x).pow(2).sum())
    exact = float(x.pow(2).sum()) - sum(float(t.abs().sum()) ** 2 / t.numel() for t in x.split(SIZES))
    assert math.isclose(err, exact, rel_tol=1e-4)


def test_sign_kernels_build_where_a_compiler_exists():
    if os.environ.get("HPCGAN_NATIVE") == "0" or not shutil.which(shlex.split(os.environ.get("CC", "cc"))[0]):
        pytest.skip("native kernels disabled or no C compiler")
    assert sign._kernels() is not None


def test_sign_native_and_torch_paths_agree(monkeypatch):
    """Same bits and outputs from the C kernels and the torch fallback, across tensor boundaries
    inside bytes, +-0.0, short tails, and an output large enough to be streamed past the cache."""
    if sign._kernels() is None:
        pytest.skip("native kernels unavailable")
    sizes = [3, 13, 64, 1, 1000, 37, 2_200_005]
    x = torch.randn(sum(sizes), generator=torch.Generator().manual_seed(3))
    x[[0, 17, 80]], x[[1, 81]] = 0.0, -0.0
    x[2000:3000:3] = 0.0                       # zeros inside the vector kernel's blocks
    c = make("sign")
    c.calls = 5
    (packed, scales), ctx = c.compress(x, sizes)
    y = c.decompress([packed, scales], ctx)
    base = torch.randn(x.numel())
    added = c.decompress_add([packed, scales], ctx, base.clone())
    monkeypatch.setattr(sign, "_native", lambda *tensors: None)
    c.calls = 5                                # the same call: the same bits for the zeros
    (packed_t, scales_t), _ = c.compress(x, sizes)
    assert torch.equal(packed, packed_t)
    torch.testing.assert_close(scales, scales_t, rtol=2e-6, atol=0)
    assert torch.equal(c.decompress([packed, scales], ctx), y)
    nonzero = x != 0
    assert torch.equal(torch.signbit(y)[nonzero], torch.signbit(x)[nonzero])
    zeros = torch.signbit(y)[~nonzero].float().mean()
    assert 0.3 < zeros < 0.7, "zeros get both signs"
    assert torch.equal(added, base + y)
    assert torch.equal(c.decompress_add([packed, scales], ctx, base.clone()), added)


@pytest.mark.parametrize("native", [True, False])
def test_sign_does_not_move_exact_zeros_on_average(monkeypatch, native):
    """One bit cannot send 0: a zero gets a sign that changes every call, so over calls the
    decompressed zero coordinates average to about 0 (with sign(0) = +1 they would move by +scale
    every call). Checked without error feedback, where nothing else would cancel it."""
    if not native:
        monkeypatch.setattr(sign, "_native", lambda *tensors: None)
    elif sign._kernels() is None:
        pytest.skip("native kernels unavailable")
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0)).clamp(min=0)   # half exact zeros (ReLU)
    c, total, calls = make("sign"), torch.zeros(4096), 400
    for _ in range(calls):
        total += c.decompress(*c.compress(x, [4096]))
    scale = float(x.abs().mean())
    drift = total[x == 0] / calls
    assert float(drift.mean().abs()) < 0.02 * scale, "zeros drift on average"
    assert float(drift.abs().max()) < 0.3 * scale, "every zero coordinate alone averages out too"
    state = c.state_dict()
    again = make("sign")
    again.load_state_dict(state)
    assert torch.equal(again.compress(x, [4096])[0][0], c.compress(x, [4096])[0][0]), "the call count resumes"


def test_topk_keeps_the_largest_and_exact_values():
    x = torch.randn(D)
    c = make("topk", ratio=0.01)
    y = c.decompress(*c.compress(x, SIZES))
    k = math.ceil(0.01 * D)
    kept = y.nonzero().flatten()
    assert len(kept) == k and torch.equal(y[kept], x[kept])
    assert x.abs()[kept].min() >= x.abs().topk(k).values.min()


def test_randk_shares_indices_across_instances_and_advances():
    a, b = RandK(ratio=0.1), RandK(ratio=0.1)
    x1, x2 = torch.randn(D), torch.randn(D)
    (_, (_, _, i1)), (_, (_, _, j1)) = a.compress(x1, SIZES), b.compress(x2, SIZES)
    (_, (_, _, i2)) = a.compress(x1, SIZES)
    assert torch.equal(i1, j1), "same seed and call count -> same coordinates (summable)"
    assert not torch.equal(i1, i2), "the stream advances per call"
    p1, ctx = a.compress(x1, SIZES)
    p2, _ = b.compress(x2, SIZES)
    torch.testing.assert_close(a.decompress([p1[0] + p2[0]], ctx),
                               a.decompress(p1, ctx) + b.decompress(p2, ctx))


def test_randk_state_round_trips_so_a_resumed_run_draws_the_same_indices():
    x = torch.randn(D)
    a = make("randk", ratio=0.1)
    a.compress(x, SIZES)
    b = make("randk", ratio=0.1)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.compress(x, SIZES)[1][2], b.compress(x, SIZES)[1][2])


def test_qsgd_is_unbiased_before_scaling():
    torch.manual_seed(3)
    x = torch.randn(64)
    c = QSGD(levels=2)
    mean = torch.stack([c.decompress(*c.compress(x, [64])) for _ in range(400)]).mean(0)
    torch.testing.assert_close(mean * (1 + c.omega(64)), x, atol=0.2, rtol=0.1)


def wire_bytes(name, d, tensors, ratio=0.01, levels=16):
    k = math.ceil(ratio * d)
    return {"identity": 4 * d, "fp16": 2 * d, "bf16": 2 * d, "sign": math.ceil(d / 8) + 4 * tensors,
            "topk": 8 * k, "randk": 4 * k,
            "qsgd": math.ceil(math.log2(2 * levels + 1)) * math.ceil(d / 8) + 4 * tensors}[name]


@pytest.mark.parametrize("name", NAMES)
def test_wire_bytes_match_the_table(name):
    x = torch.randn(D)
    c = make(name, ratio=0.01)
    payload, _ = c.compress(x, SIZES)
    assert c.nbytes(payload) == wire_bytes(name, D, len(SIZES))
    assert sum(t.numel() * t.element_size() for t in payload) == c.nbytes(payload)


def test_wire_ratios_of_the_speed_targets():
    d = 1_000_000
    assert wire_bytes("sign", d, 1) * 30 <= 4 * d
    assert wire_bytes("topk", d, 1) * 45 <= 4 * d


@pytest.mark.parametrize("name", NAMES)
def test_error_feedback_telescopes(name):
    """sum_t decompress(payload_t) + e_T = sum_t x_t, per named buffer."""
    torch.manual_seed(0)
    c = make(name, ratio=0.05, levels=4)
    ef = ErrorFeedback(c)
    sent = {"G": torch.zeros(D, dtype=torch.float64), "D": torch.zeros(50, dtype=torch.float64)}
    total = {k: torch.zeros_like(v) for k, v in sent.items()}
    for t in range(20):
        for key, n in (("G", D), ("D", 50)):
            x = torch.randn(n)
            payload, ctx = ef.compress(key, x, SIZES if key == "G" else [n])
            sent[key] += c.decompress(payload, ctx).double()
            total[key] += x.double()
    for key in sent:
        torch.testing.assert_close(sent[key] + ef.residuals[key].double(), total[key], atol=1e-4, rtol=0)


def test_bit_packing_matches_numpy_little_order():
    flags = torch.rand(1001) < 0.5
    packed = bits.pack(flags)
    assert torch.equal(packed, torch.from_numpy(np.packbits(flags.numpy(), bitorder="little")))
    assert torch.equal(bits.unpack(packed, 1001).bool(), flags)
