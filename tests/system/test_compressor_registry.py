"""Compressors own their options: a toy compressor with one option, registered in its own file (here),
works with train (its flag, stored and checked), bench comm and the DDP hook, with no other edit."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import h5py
import pytest
import torch
import torch.distributed as dist
from mpi4py import MPI

from hpcgan.__main__ import main
from hpcgan.comm.torchdist import init_process_group
from hpcgan.compress import COMPRESSORS, Compressor, build_compressor
from hpcgan.compress.hooks import CompressionHook, compression_hook
from hpcgan.config import Section, opt


class Truncate(Compressor):
    """Q(x) = x with the low 23 - toy_bits mantissa bits of each fp32 value cleared (rounding towards
    zero): |Q(x)_i - x_i| < 2^-toy_bits |x_i|, so delta >= 1 - 4^-toy_bits. Decompression is the
    identity, so payloads may be summed."""

    name, summable = "toy", True

    @dataclass(frozen=True)
    class Options(Section):
        toy_bits: int = opt(10, "mantissa bits the toy compressor keeps", ge=1, le=23)

    def __init__(self, toy_bits: int = Options.toy_bits):
        self.bits = toy_bits

    def compress(self, x, sizes):
        bits = x.reshape(-1).to(torch.float32).contiguous().view(torch.int32)
        return [(bits & -(1 << (23 - self.bits))).view(torch.float32)], x.shape

    def decompress(self, payload, ctx):
        return payload[0].view(ctx)

    def delta(self, d: int) -> float:
        return 1.0 - 4.0**-self.bits


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(COMPRESSORS._items, "toy", Truncate)   # as @COMPRESSORS.register("toy") would


def test_the_toy_is_built_from_its_own_options(toy):
    x = torch.tensor([1.0 + 2.0**-3 + 2.0**-9, -3.0])
    assert torch.equal(build_compressor("toy", toy_bits=4).compress(x, [2])[0][0], torch.tensor([1.125, -3.0]))
    assert build_compressor("toy").bits == 10
    with pytest.raises(Exception, match="--toy-bits must be <= 23"):
        build_compressor("toy", toy_bits=30)


def test_a_toy_compressor_trains_with_its_own_flag(toy, tmp_path, capsys):
    out = tmp_path / "toy.h5"
    assert main(["train", "--algo", "dqgan", "--compressor", "toy", "--toy-bits", "4", "--steps", "3",
                 "--out", str(out)]) == 0
    with h5py.File(out) as f:
        comm = json.loads(f.attrs["config_json"])["comm"]
        assert comm["compressor"] == "toy" and comm["compressor_options"]["toy_bits"] == 4, "stored, self-describing"
        assert f.attrs["compressor"] == "toy"
    assert main(["train", "--algo", "dqgan", "--compressor", "toy", "--toy-bits", "30", "--out", str(out)]) == 2
    assert "--toy-bits must be <= 23" in capsys.readouterr().err
    assert main(["train", "--algo", "sync", "--toy-bits", "4", "--out", str(out)]) == 2
    assert "--algo sync does not use --toy-bits (used by dqgan)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    assert "toy" in help_text.split("--compressor COMPRESSOR")[-1].split("(default")[0], "in --compressor's list"
    assert "--toy-bits TOY_BITS" in help_text


def test_bench_comm_measures_the_toy(toy, capsys):
    assert main(["bench", "comm", "--backends", "mpi", "--compressors", "toy", "--toy-bits", "3", "--sizes", "4KiB",
                 "--iters", "2", "--real-grads", "none"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:2] == ["mpi", "toy"]]
    assert len(rows) == 1 and float(rows[0][3]) > 0, "one row: its collective was timed"
    assert rows[0][7] != "-" and float(rows[0][7]) > 0, "its compression was timed against a clone"


def test_the_ddp_hook_runs_the_toy(toy):
    created = not dist.is_initialized()
    init_process_group(MPI.COMM_WORLD)  # this process alone: the mean over ranks is Q(g)
    try:
        torch.manual_seed(0)
        plain, x = torch.nn.Linear(8, 4), torch.randn(16, 8)
        net = torch.nn.parallel.DistributedDataParallel(copy.deepcopy(plain))
        net.register_comm_hook(CompressionHook(build_compressor("toy", toy_bits=2)), compression_hook)
        net(x).square().sum().backward()
        plain(x).square().sum().backward()
        for p, r in zip(net.module.parameters(), plain.parameters()):
            assert torch.equal(p.grad, Truncate(2).compress(r.grad, [r.numel()])[0][0].view_as(r.grad))
            assert not torch.equal(p.grad, r.grad), "the toy changed the gradient"
    finally:
        if created:
            dist.destroy_process_group()
