"""Compressors: measured delta, round-trip shapes, bytes on the wire, error-feedback telescoping."""
import ctypes
import math
import os
import platform
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from hpcgan.compress import bits, counter, qsgd, sign, sparse
from hpcgan.compress import COMPRESSORS, build_compressor
from hpcgan.compress.base import local_rounds, roundtrip
from hpcgan.compress.feedback import ErrorFeedback
from hpcgan.compress.powersgd import layout
from hpcgan.compress.qsgd import QSGD
from hpcgan.compress.sparse import RandK, keep_counts
from hpcgan.config import CommConfig
from hpcgan.errors import UsageError

NAMES = COMPRESSORS.names()
RANDOM = {"randk", "qsgd", "powersgd"}  # delta holds in expectation (powersgd: over its random start)
SIZES = [300, 7, 1, 693]  # parameter tensors of a flat buffer, d = 1001 (not a multiple of 8)
D = sum(SIZES)


def make(name, **kw):
    return build_compressor(CommConfig(compressor=name, compressor_options=kw))


def test_every_compressor_is_registered_and_unknown_names_fail():
    assert {"identity", "fp16", "bf16", "sign", "topk", "topk-torch", "randk", "qsgd", "powersgd"} <= set(NAMES)
    with pytest.raises(UsageError, match="--compressor must be one of .*sign.*; got 'nope'"):
        make("nope")
    with pytest.raises(UsageError, match="unknown compressor 'nope'; valid: .*sign"):
        build_compressor("nope")
    with pytest.raises(UsageError, match="compressor qsgd takes options levels; got ratio"):
        build_compressor("qsgd", ratio=0.1)
    assert build_compressor("topk", ratio=0.25).ratio == 0.25 and build_compressor("qsgd", levels=3).levels == 3
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
    err = np.mean([float((roundtrip(c, x, SIZES) - x).pow(2).sum()) for _ in range(draws)])
    bound = (1 - c.delta(D)) * float(x.pow(2).sum())
    slack = 1.08 if name in RANDOM else 1 + 1e-6
    assert err <= bound * slack, f"{name}: {err} > {bound}"
    assert 0 < c.delta(D) <= 1


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_shape_dtype(name):
    x = torch.randn(13, 77)
    c = make(name, ratio=0.1)
    y = roundtrip(c, x, [13 * 77])
    assert y.shape == x.shape and y.dtype == x.dtype
    z = torch.zeros(4000)
    assert torch.all(roundtrip(c, z, [40, 3960]) == 0), "zero compresses to zero"


@pytest.mark.parametrize("name", NAMES)
def test_payload_shapes_depend_only_on_the_input_length(name):
    """What lets the communicator check payload sizes once per buffer instead of every step."""
    c = make(name, ratio=0.05, levels=4)
    shapes = [[[(t.shape, t.dtype) for t in payload] for payload in local_rounds(c, *c.compress(x, SIZES))]
              for x in (torch.randn(D), torch.zeros(D), torch.randn(D) ** 5, torch.ones(D),
                        torch.where(torch.arange(D) % 3 == 0, 1e6, 1e-6))]
    assert all(s == shapes[0] for s in shapes)


@pytest.mark.parametrize("name", NAMES)
def test_decompress_add_equals_adding_the_decompressed_payload(name):
    c = make(name, ratio=0.05, levels=4)
    payload, ctx = c.compress(torch.randn(D), SIZES)
    payload = local_rounds(c, payload, ctx)[-1]
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


@pytest.mark.parametrize("name", ["topk", "topk-torch"])
def test_topk_keeps_the_largest_of_each_tensor_and_exact_values(name):
    x = torch.randn(D)
    c = make(name, ratio=0.01)
    y = c.decompress(*c.compress(x, SIZES))
    for xs, ys, k in zip(x.split(SIZES), y.split(SIZES), keep_counts(0.01, SIZES)):
        kept = ys.nonzero().flatten()
        assert len(kept) == k and torch.equal(ys[kept], xs[kept])
        assert xs.abs()[kept].min() >= xs.abs().topk(k).values.min()
    assert c.stats()["kept"] == sum(keep_counts(0.01, SIZES)) == 12


def c_sample_positions(n: int) -> list[int]:
    """Where topk.c samples a tensor of n > SMALL values (runs of 8 at splitmix64 offsets)."""
    return [counter.splitmix64((n * 0x100000001B3 + j) & counter.MASK64) % (n - 7) + r
            for j in range(512) for r in range(8)]


def topk_cases():
    """(x, sizes): ties, +-0, heavy tails, many tensors, a tensor whose sample misleads the threshold
    (the rescan), one whose sample passes everything (the buffer cuts), all equal values."""
    g = torch.Generator().manual_seed(7)
    mixed = torch.randn(60_000, generator=g) ** 3
    mixed[::7] = 0.0
    mixed[1::7] = -0.0
    mixed[2::11] = 1.5
    mixed[3::11] = -1.5
    n = 100_000
    misled = torch.rand(n, generator=g)               # sampled entries huge and fewer than k: rescan
    misled[c_sample_positions(n)] = 1e6 + torch.arange(4096.0)
    cuts = torch.randn(n, generator=g)                # sampled entries tiny: everything is a candidate
    cuts[c_sample_positions(n)] = 1e-30
    return [(mixed, [3, 13, 64, 1, 1000, 37, 58_882]), (misled, [n]), (cuts, [n]),
            (torch.ones(20_000), [20_000]), (torch.randn(1001, generator=g), SIZES)]


@pytest.mark.parametrize("case", range(5))
def test_topk_threshold_selection_is_exact_topk_on_the_native_and_torch_paths(case, monkeypatch):
    """Exact top-k under (larger |x| first, then lower index), in index order, whatever the sample
    did; the C kernel and the torch fallback give the same bits."""
    x, sizes = topk_cases()[case]
    ratio = 0.05
    c = make("topk", ratio=ratio)
    (values, index), ctx = c.compress(x, sizes)
    native_stats = c.stats()
    want, start = [], 0
    for n, k in zip(sizes, keep_counts(ratio, sizes)):
        key = x[start:start + n].abs().double() - torch.arange(n) * 1e-12  # ties: lower index first
        want.append(key.topk(k).indices.sort().values + start)             # (all |x| here are >> 1e-7)
        start += n
    assert torch.equal(index.long(), torch.cat(want))
    assert torch.equal(values, x[index.long()])
    assert native_stats["kept"] == len(index) and 0 < native_stats["delta"] <= 1
    if case == 1 and sparse._kernels() is not None:
        assert native_stats["passes"] == 2, "the misleading sample forces the second pass"
    monkeypatch.setattr(sparse, "_native", lambda t: None)
    (values_t, index_t), _ = c.compress(x, sizes)
    assert torch.equal(values_t, values) and torch.equal(index_t, index)


def test_topk_threshold_path_keeps_k_and_the_delta_of_torch_topk_on_random_tensors():
    x = torch.randn(300_000)
    a, b = make("topk", ratio=0.01), make("topk-torch", ratio=0.01)
    pa, _ = a.compress(x, [200_000, 100_000])
    pb, _ = b.compress(x, [200_000, 100_000])
    assert torch.equal(pa[1], pb[1])  # no ties: the same set, both in index order
    assert a.stats()["kept"] == b.stats()["kept"] == 3000
    assert math.isclose(a.stats()["delta"], b.stats()["delta"], rel_tol=1e-5)
    assert a.stats()["candidates_per_k"] < 2.5, "the sampled threshold lets about 1.5 k through"


def test_randk_keeps_k_distinct_coordinates_per_tensor_each_with_probability_k_over_n():
    c = RandK(ratio=0.1, seed=3)
    sizes = [50, 7, 1, 93]
    counts = torch.zeros(sum(sizes))
    calls = 4000
    for _ in range(calls):
        index = c.indices(sizes)
        start = 0
        for n, k in zip(sizes, keep_counts(0.1, sizes)):
            mine = index[(index >= start) & (index < start + n)]
            assert len(mine) == k == len(set(mine.tolist()))
            start += n
        counts[index] += 1
    freq = counts / calls
    start = 0
    for n, k in zip(sizes, keep_counts(0.1, sizes)):
        p = k / n
        assert torch.allclose(freq[start:start + n], torch.full((n,), p), atol=5 * math.sqrt(p * (1 - p) / calls) + 1e-9)
        start += n


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
    x = torch.randn(64, generator=torch.Generator().manual_seed(3))
    c = QSGD(levels=2, seed=3)
    mean = torch.stack([c.decompress(*c.compress(x, [64])) for _ in range(400)]).mean(0)
    torch.testing.assert_close(mean * (1 + c.omega(64)), x, atol=0.2, rtol=0.1)


def test_qsgd_rounding_is_reproducible_from_seed_and_call_count():
    x = torch.randn(D)
    a, b, other = QSGD(levels=4, seed=11), QSGD(levels=4, seed=11), QSGD(levels=4, seed=12)
    first = a.compress(x, SIZES)[0][0]
    assert torch.equal(first, b.compress(x, SIZES)[0][0]), "same seed, same call: same bits"
    assert not torch.equal(first, other.compress(x, SIZES)[0][0]), "another seed rounds differently"
    second = a.compress(x, SIZES)[0][0]
    assert not torch.equal(first, second), "the counter advances per call"
    resumed = QSGD(levels=4, seed=0)
    resumed.load_state_dict(QSGD(levels=4, seed=11).state_dict() | {"calls": 1})
    assert torch.equal(resumed.compress(x, SIZES)[0][0], second)


def test_counter_uniforms_are_uniform_and_match_their_definition():
    u = counter.uniform24(200_000, counter.call_key(1, 2, 3))
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.005
    assert float(u.var()) == pytest.approx(1 / 12, rel=0.02)
    key = counter.call_key(5, 1, 0)

    def mix32(v):  # the lowbias32 hash on Python ints
        v ^= v >> 16
        v = (v * 0x7FEB352D) & counter.MASK32
        v ^= v >> 15
        v = (v * 0x846CA68B) & counter.MASK32
        return v ^ (v >> 16)
    h = [mix32(((i ^ (key & counter.MASK32)) + (key >> 32)) & counter.MASK32) for i in range(100)]
    assert torch.equal(counter.uniform24(100, key), torch.tensor([(v >> 8) * 2.0**-24 for v in h], dtype=torch.float32))


@pytest.mark.parametrize("levels", [1, 4, 16, 127, 200])
def test_qsgd_native_and_torch_paths_agree(levels, monkeypatch):
    """Same planes and outputs from the C kernels and the torch fallback, across tensor boundaries
    inside bytes, +-0.0, short tails; decompress_add adds exactly the decompressed values."""
    sizes = [3, 13, 64, 1, 1000, 37, 200_005]
    x = torch.randn(sum(sizes), generator=torch.Generator().manual_seed(3))
    x[[0, 17, 80]], x[[1, 81]] = 0.0, -0.0
    x[1000:1100] = 0.0  # a zero tensor-sized stretch inside a tensor
    c = QSGD(levels=levels, seed=9)
    payload, ctx = c.compress(x, sizes)
    y = c.decompress(payload, ctx)
    base = torch.randn(x.numel())
    added = c.decompress_add(payload, ctx, base.clone())
    assert torch.equal(added, base + y)
    monkeypatch.setattr(qsgd, "_kernels", lambda: None)
    c.calls = 0
    payload_t, _ = c.compress(x, sizes)
    assert torch.equal(payload[0], payload_t[0]) and torch.equal(payload[1], payload_t[1])
    assert torch.equal(c.decompress(payload, ctx), y)
    assert torch.equal(c.decompress_add(payload, ctx, base.clone()), added)


def test_qsgd_kernels_build_where_a_compiler_exists():
    if os.environ.get("HPCGAN_NATIVE") == "0" or not shutil.which(shlex.split(os.environ.get("CC", "cc"))[0]):
        pytest.skip("native kernels disabled or no C compiler")
    assert qsgd._kernels() is not None and sparse._kernels() is not None


def wire_bytes(name, sizes, ratio=0.01, levels=16, rank=4):
    d, tensors, k = sum(sizes), len(sizes), sum(keep_counts(ratio, sizes))
    lay = layout(tuple(sizes), rank)
    return {"identity": 4 * d, "fp16": 2 * d, "bf16": 2 * d, "sign": math.ceil(d / 8) + 4 * tensors,
            "topk": 8 * k, "topk-torch": 8 * k, "randk": 4 * k,
            "qsgd": math.ceil(math.log2(2 * levels + 1)) * math.ceil(d / 8) + 4 * tensors,
            "powersgd": 4 * sum(n for _, n in lay.dense) + 4 * rank * sum(m.rows + m.cols for m in lay.matrices),
            }[name]


@pytest.mark.parametrize("name", NAMES)
def test_wire_bytes_match_the_table(name):
    x = torch.randn(D)
    c = make(name, ratio=0.01)
    payloads = local_rounds(c, *c.compress(x, SIZES))
    assert sum(c.nbytes(p) for p in payloads) == wire_bytes(name, SIZES)
    assert all(sum(t.numel() * t.element_size() for t in p) == c.nbytes(p) for p in payloads)


def test_wire_ratios_of_the_speed_targets():
    d = [1_000_000]
    assert wire_bytes("sign", d) * 30 <= 4 * d[0]
    assert wire_bytes("topk", d) * 45 <= 4 * d[0]
    assert wire_bytes("powersgd", [6_300_000]) * 100 <= 4 * 6_300_000


@pytest.mark.parametrize("name", NAMES)
def test_error_feedback_telescopes(name):
    """sum_t decompress(payload_t) + e_T = sum_t x_t, per named buffer."""
    torch.manual_seed(0)
    c = make(name, ratio=0.05, levels=4)
    ef = ErrorFeedback()
    sent = {"G": torch.zeros(D, dtype=torch.float64), "D": torch.zeros(50, dtype=torch.float64)}
    total = {k: torch.zeros_like(v) for k, v in sent.items()}
    for t in range(20):
        for key, n in (("G", D), ("D", 50)):
            x = torch.randn(n)
            p = ef.compensate(key, x)
            payload, ctx = c.compress(p, SIZES if key == "G" else [n])
            last = local_rounds(c, payload, ctx)[-1]
            ef.update(key, p, c.local(payload, ctx))
            sent[key] += c.decompress(last, ctx).double()
            total[key] += x.double()
    for key in sent:
        torch.testing.assert_close(sent[key] + ef.residuals[key].double(), total[key], atol=1e-4, rtol=0)


def test_bit_packing_matches_numpy_little_order():
    flags = torch.rand(1001) < 0.5
    packed = bits.pack(flags)
    assert torch.equal(packed, torch.from_numpy(np.packbits(flags.numpy(), bitorder="little")))
    assert torch.equal(bits.unpack(packed, 1001).bool(), flags)


@pytest.mark.parametrize("isa, flags", [("avx2", ["-mno-avx512f"]), ("portable", ["-mno-avx2", "-mno-avx512f"])])
def test_every_isa_path_of_the_qsgd_and_topk_kernels_gives_the_torch_bits(isa, flags, tmp_path, monkeypatch):
    """The kernels built for an older CPU than this one (AVX2 only, no SIMD) give the same bits."""
    cc = shlex.split(os.environ.get("CC", "cc"))
    if platform.machine() not in ("x86_64", "AMD64") or not shutil.which(cc[0]):
        pytest.skip("x86-64 ISA variants need an x86-64 C compiler")
    for module, name in ((qsgd, "qsgd"), (sparse, "topk")):
        so = tmp_path / f"{name}.so"
        subprocess.run(cc + ["-O3", "-march=native", *flags, "-fPIC", "-shared", "-std=c11", "-o", str(so),
                             str(Path(module.__file__).with_name(f"{name}.c"))], check=True)
        monkeypatch.setattr(module.native, "load", lambda _, so=so: ctypes.CDLL(str(so)))
        lib = module._kernels.__wrapped__()  # the variant, with its argument types declared
        monkeypatch.setattr(module, "_kernels", lambda lib=lib: lib)
        assert module.implementation() == f"c-{isa}"
    sizes = [3, 13, 64, 1, 1000, 37, 20_005, 70_000]
    x = torch.randn(sum(sizes), generator=torch.Generator().manual_seed(3))
    x[[0, 17, 80]], x[[1, 81]] = 0.0, -0.0
    for levels in (4, 16):
        c, fallback = QSGD(levels=levels, seed=9), QSGD(levels=levels, seed=9)
        fallback._native = lambda *tensors: None
        payload, ctx = c.compress(x, sizes)
        assert torch.equal(payload[0], fallback.compress(x, sizes)[0][0]), f"qsgd s={levels}"
        base = torch.randn(x.numel())
        assert torch.equal(c.decompress_add(payload, ctx, base.clone()), base + fallback.decompress(payload, ctx))
    (values, index), _ = make("topk", ratio=0.05).compress(x, sizes)
    want = sparse._select_torch(x, tuple(sizes), keep_counts(0.05, sizes))
    assert torch.equal(values, want[0]) and torch.equal(index, want[1])
