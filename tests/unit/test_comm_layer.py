"""Communicator plumbing on one process: backend names, the network model, byte packing."""
import copy

import pytest
import torch

from hpcgan.comm import build_communicator
from hpcgan.compress import build_compressor
from hpcgan.exchange import collect, from_bytes, to_bytes
from hpcgan.netmodel import NetworkModel
from hpcgan.config import CommConfig
from hpcgan.errors import UsageError


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(UsageError, match="unknown backend 'gloo'; valid: horovod, mpi, torch"):
        build_communicator(CommConfig(backend="gloo"))


def test_network_model_formulas():
    net = NetworkModel(latency=1e-5, bandwidth=1e9)
    assert net.allreduce(4_000_000, 4) == pytest.approx(2 * 3 * (1e-5 + 1e6 / 1e9))
    assert net.allgather(1000, 4) == pytest.approx(3 * (1e-5 + 1e-6))
    assert net.broadcast(1000, 8) == pytest.approx(3 * (1e-5 + 1e-6))
    assert net.allreduce(10**9, 1) == 0.0 and not NetworkModel().active


def test_single_rank_aggregate_sends_nothing_and_applies_no_emulated_delay():
    comm = build_communicator(CommConfig(net_latency=1.0, net_bandwidth=1.0))
    x = torch.randn(100)
    c = build_compressor(CommConfig(compressor="sign"))
    y = collect(comm, c, *c.compress(x, [100]))
    torch.testing.assert_close(y, c.decompress(*c.compress(x, [100])))
    assert comm.bytes_sent == 0 and comm.t_net_emulated == 0.0 and comm.calls == 1


def test_payload_bytes_round_trip_keeps_dtypes_and_alignment():
    payload = [torch.arange(13, dtype=torch.uint8), torch.randn(3), torch.arange(5, dtype=torch.int32)]
    wire = to_bytes(payload)
    assert wire.numel() == 13 + 12 + 20
    shifted = torch.cat([torch.zeros(3, dtype=torch.uint8), wire])[3:]  # unaligned slice
    for a, b in zip(from_bytes(shifted, payload), payload):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_stacked_payload_bytes_view_every_row_even_when_rows_are_unaligned():
    """Rows of 13 + 12 + 20 = 45 bytes: row 1's fp32 and int32 parts start unaligned, so they are
    copied; row m of every part is payload m."""
    payloads = [[torch.arange(13, dtype=torch.uint8) + m, torch.randn(3), torch.arange(5, dtype=torch.int32) * m]
                for m in range(3)]
    rows = torch.stack([to_bytes(p) for p in payloads])
    stacked = from_bytes(rows, payloads[0])
    for m, payload in enumerate(payloads):
        for part, b in zip(stacked, payload):
            assert part.dtype == b.dtype and torch.equal(part[m], b)


@pytest.mark.parametrize("name", ["sign", "qsgd", "topk", "topk-torch"])
@pytest.mark.parametrize("sizes", [[1000], [3, 997, 29]])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_decompress_sum_of_stacked_payloads_equals_row_by_row_adds_bit_for_bit(name, sizes, dtype):
    """What every rank computes from the gathered rows is the rank-order sum of the decompressed
    payloads, the same bits as decompressing and adding them one by one (the default), in x's
    dtype (fp64 buffers are summed in fp64)."""
    c = build_compressor(name)
    xs = [torch.randn(sum(sizes), generator=torch.Generator().manual_seed(m), dtype=dtype) for m in range(3)]
    compressed = [c.compress(x, sizes) for x in xs]
    ctx = compressed[0][1]
    expected = c.decompress(compressed[0][0], ctx)
    for payload, _ in compressed[1:]:
        c.decompress_add(payload, ctx, expected)
    rows = torch.stack([to_bytes(payload) for payload, _ in compressed])
    got = c.decompress_sum(from_bytes(rows, compressed[0][0]), ctx)
    assert got.dtype == expected.dtype and torch.equal(got, expected)


@pytest.mark.parametrize("name", ["sign", "qsgd", "topk", "randk", "powersgd", "fp16"])
@pytest.mark.parametrize("n", [1024, 1001])  # 1001: sign's rows of 130 bytes leave the scales unaligned
def test_reused_wire_buffers_give_each_call_its_own_mean(name, n):
    """Small host payloads reuse one set of wire buffers per signature: a later call must neither
    change an earlier call's result nor see its data."""
    comm = build_communicator(CommConfig())
    c = build_compressor(name)
    xs = [torch.randn(n, generator=torch.Generator().manual_seed(s)) for s in range(2)]
    first = collect(comm, c, *c.compress(xs[0], [n]))
    kept, same_state = first.clone(), copy.deepcopy(c)  # (call counts, PowerSGD's warm start)
    second = collect(comm, c, *c.compress(xs[1], [n]))
    assert torch.equal(first, kept), "a returned mean never aliases a reused buffer"
    new_buffers = build_communicator(CommConfig())
    assert torch.equal(second, collect(new_buffers, same_state, *same_state.compress(xs[1], [n])))


def test_importing_the_ddp_hooks_and_building_a_compressor_starts_no_mpi():
    """A DDP script under torchrun imports the hooks and builds a compressor by name: MPI must not
    start (a singleton MPI init under torchrun), so mpi4py.MPI stays unimported."""
    import subprocess
    import sys

    code = ("import sys; import hpcgan.compress.hooks as h; from hpcgan.compress import build_compressor; "
            "c = build_compressor('topk', ratio=0.01); h.CompressionHook(c); "
            "assert 'mpi4py.MPI' not in sys.modules, sorted(m for m in sys.modules if 'mpi' in m)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
