"""Compressors on a CUDA device (torch ops) against the CPU path (the C kernels where they exist):
the same payload bits and the same decompressed values. Runs wherever CUDA exists
(tools/gpu_check.sh runs it on a GPU machine); qsgd is left out: its stochastic rounding draws
from the device's own generator, so CPU and GPU draw different (equally valid) roundings."""
from __future__ import annotations

import pytest
import torch

from hpcgan.compress import build_compressor
from hpcgan.config import CommConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: GPU compressors are compared with the CPU ones where CUDA exists")
SIZES = [1000, 7, 2049, 13]  # tensor boundaries inside packed bytes


def data() -> torch.Tensor:
    x = torch.randn(sum(SIZES), generator=torch.Generator().manual_seed(0))
    x[5], x[6] = 0.0, -0.0  # exact zeros: the same (hashed) sign bit on both devices
    return x


def payloads(name: str, x: torch.Tensor):
    """(CPU payload, GPU payload moved to the CPU, compressor) for fresh compressors of ``name``."""
    cpu, gpu = (build_compressor(CommConfig(compressor=name, compressor_options={"ratio": 0.05})) for _ in range(2))
    p_cpu, ctx = cpu.compress(x, SIZES)
    p_gpu, ctx_gpu = gpu.compress(x.cuda(), SIZES)
    assert all(t.device.type == "cuda" for t in p_gpu), f"{name}: payload left the device"
    return p_cpu, ctx, [t.cpu() for t in p_gpu], ctx_gpu, cpu


@pytest.mark.parametrize("name", ["identity", "fp16", "bf16", "randk"])
def test_exact_compressors_send_the_same_bits_on_gpu(name):
    p_cpu, _, p_gpu, _, _ = payloads(name, data())
    assert len(p_cpu) == len(p_gpu)
    for a, b in zip(p_cpu, p_gpu):
        assert a.dtype == b.dtype and torch.equal(a.view(-1).view(torch.uint8), b.view(-1).view(torch.uint8))


def test_sign_bits_equal_the_c_kernels_and_scales_agree_to_rounding():
    packed_cpu, scales_cpu = payloads("sign", data())[0]
    packed_gpu, scales_gpu = payloads("sign", data())[2]
    assert torch.equal(packed_cpu, packed_gpu), "the same sign bits"
    # the kernels sum |x| in fp64 over fp32 blocks: the scales may differ in the last bits
    torch.testing.assert_close(scales_gpu, scales_cpu, rtol=1e-6, atol=0)


def test_topk_keeps_the_same_coordinates_and_values():
    p_cpu, ctx, p_gpu, ctx_gpu, c = payloads("topk", data())
    order_cpu, order_gpu = p_cpu[1].argsort(), p_gpu[1].argsort()  # the order of the k entries may differ
    assert torch.equal(p_cpu[1][order_cpu], p_gpu[1][order_gpu])
    assert torch.equal(p_cpu[0][order_cpu], p_gpu[0][order_gpu])


@pytest.mark.parametrize("name", ["identity", "fp16", "bf16", "sign", "topk", "randk"])
def test_one_payload_decompresses_to_the_same_values_on_both_devices(name):
    """The CPU payload decompressed on the CPU, and on the GPU with the context a GPU run has."""
    p_cpu, ctx, _, ctx_gpu, c = payloads(name, data())
    on_cpu = c.decompress(p_cpu, ctx)
    on_gpu = c.decompress([t.cuda() for t in p_cpu], ctx_gpu)
    assert on_gpu.device.type == "cuda" and torch.equal(on_cpu, on_gpu.cpu())
    acc_cpu, acc_gpu = on_cpu.clone(), on_gpu.clone()
    c.decompress_add(p_cpu, ctx, acc_cpu)
    c.decompress_add([t.cuda() for t in p_cpu], ctx_gpu, acc_gpu)
    assert torch.equal(acc_cpu, acc_gpu.cpu())
