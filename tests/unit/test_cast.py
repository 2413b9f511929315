"""cast.c's fp16 / bf16 casts give torch's bits (both vector builds, aligned or not, streamed or not),
and its 16-bit sums are correctly rounded."""
import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from hpcgan.compress import cast

SPECIAL = [0.0, -0.0, float("inf"), -float("inf"), 1e-45, -1e-45, 1e-40, 6e-8, 3e-8, 65504.0, 65519.0, 65520.0,
           1e6, -1e6, 3.4e38, 1.00048828125, 1.0009765625, 1.001953125, 1.00390625]
DTYPES = [torch.float16, torch.bfloat16]


def values(n: int) -> torch.Tensor:
    """The special values (ties, overflow, subnormals, signed zeros) then n values over many octaves."""
    g = torch.Generator().manual_seed(n)
    return torch.cat([torch.tensor(SPECIAL), torch.randn(n, generator=g) * torch.exp(20 * torch.randn(n, generator=g))])


def check(cast_fn) -> None:
    # 2.2M values: outputs above the 8 MiB streaming threshold both ways
    for n in (1, 17, 4099, 2_200_000):
        x = values(n)
        for offset in (0, 1, 3):  # an output that starts off the vector alignment
            for dtype in DTYPES:
                low = cast_fn(x[offset:], dtype)
                assert torch.equal(low.view(torch.int16), x[offset:].to(dtype).view(torch.int16)), (n, offset, dtype)
                assert torch.equal(cast_fn(low, torch.float32), low.float()), (n, offset, dtype)
    nan = torch.full((40,), float("nan"))
    for dtype in DTYPES:
        assert cast_fn(cast_fn(nan, dtype), torch.float32).isnan().all()


def every_pair(dtype: torch.dtype, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every 16-bit pattern of ``dtype`` as x, paired with a rotated and a shuffled copy as y (NaNs,
    infinities, subnormals, signed zeros and overflowing sums included)."""
    x = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    g = torch.Generator().manual_seed(shift)
    return torch.cat([x, x]), torch.cat([x.roll(shift), x[torch.randperm(x.numel(), generator=g)]])


def check_sums() -> None:
    """``add_`` gives the correctly rounded sum (fp64 sum rounded once; NaN where it is NaN)."""
    for dtype in DTYPES:
        for shift in (1, 777):
            x, y = every_pair(dtype, shift)
            for n in (1, 17, x.numel() - 5):  # vector loops and scalar tails
                expect = (x[:n].double() + y[:n].double()).to(dtype)
                got = cast.add_(y[:n].clone(), x[:n])
                nan = expect.isnan()
                assert torch.equal(got.isnan(), nan), (dtype, shift, n)
                assert torch.equal(got[~nan].view(torch.int16), expect[~nan].view(torch.int16)), (dtype, shift, n)


def test_cast_gives_torchs_bits():
    check(cast.cast)


def test_sums_are_correctly_rounded_with_and_without_the_kernel(monkeypatch):
    assert cast.sum_kernel(torch.float16) is not None or cast.implementation() == "torch"
    check_sums()
    monkeypatch.setattr(cast, "_kernels", lambda: None)
    assert cast.sum_kernel(torch.float16) is None
    check_sums()


def test_the_avx2_build_gives_torchs_bits(tmp_path: Path, monkeypatch):
    """The AVX2 + F16C loops, which a host with AVX-512 does not build for itself."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if shutil.which("cc") is None or not all(f in flags.split() for f in ("avx2", "f16c", "fma")):
        pytest.skip("needs a C compiler and an x86 CPU with AVX2 and F16C")
    so = tmp_path / "cast_avx2.so"
    subprocess.run(["cc", "-O3", "-mavx2", "-mf16c", "-mfma", "-fPIC", "-shared", "-std=c11", "-o", str(so),
                    str(Path(cast.__file__).with_name("cast.c"))], check=True)
    lib = ctypes.CDLL(str(so))
    lib.hpcgan_cast_isa.restype = ctypes.c_char_p
    assert lib.hpcgan_cast_isa() == b"avx2"
    for fn in (*cast._KERNELS.values(), *cast._SUMS.values()):
        getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    monkeypatch.setattr(cast, "_kernels", lambda: lib)
    check(cast.cast)
    check_sums()


def test_casts_without_a_kernel_are_torchs():
    x = torch.randn(20, dtype=torch.float64)
    assert torch.equal(cast.cast(x, torch.float16), x.to(torch.float16))  # no kernel for fp64
    strided = torch.randn(20)[::2]
    assert torch.equal(cast.cast(strided, torch.bfloat16), strided.to(torch.bfloat16))
