"""`hpcgan bench comm` in quick mode: the table, the peers, the target lines, the HDF5 layout, bad names."""
import math

import h5py

from hpcgan.benchmarks.comm import SIGN_TARGET_ELEMENTS, transport_targets
from hpcgan.compress import COMPRESSORS


def test_quick_bench_prints_the_table_peers_and_targets_and_writes_hdf5(hpcgan, tmp_path):
    out = tmp_path / "comm.h5"
    r = hpcgan(2, "bench", "comm", "--backends", "mpi,torch", "--min-size", "4KiB", "--max-size", "4KiB",
               "--iters", "2", "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    ops = [n for n in COMPRESSORS.names() if n != "identity"]
    peers = {"torch-fp16-hook", "torch-powersgd-hook"}
    lines = [line.split() for line in r.stdout.splitlines()]
    halves = {"dense-fp16", "dense-bf16"}
    assert {row[1] for row in lines if row[:1] == ["mpi"]} == {"dense", *halves, *ops}
    assert {row[1] for row in lines if row[:1] == ["torch"]} == {"dense", *halves, *ops, *peers}
    targets = [line for line in r.stdout.splitlines() if line.startswith("target ")]
    for op in ops:
        assert any(t.startswith(f"target {op} slower call") for t in targets), op
    assert any("target wire bytes dense/sign" in t for t in targets)
    assert sum("topk kept / k on dcgan32/digits gradients" in t for t in targets) == 1
    assert sum(t.startswith("target peer torch: hpcgan") for t in targets) == 2
    with h5py.File(out) as f:
        comm, comp, tgt = f["comm"], f["compress"], f["targets"]
        assert comm["op"].shape == ((3 + len(ops)) * 2 + len(peers),)
        assert comp["op"].shape == (len(ops),)
        assert (comm["t_median"][()] > 0).all() and f.attrs["world_size"] == 2
        rows = {(b.decode(), o.decode()): int(w) for b, o, w in zip(comm["backend"][()], comm["op"][()],
                                                                   comm["wire_bytes"][()])}
        assert rows[("mpi", "dense")] == 4096 and rows[("mpi", "sign")] == 4096 // 32 + 4
        assert rows[("mpi", "dense-fp16")] == rows[("torch", "dense-bf16")] == 2048
        assert rows[("mpi", "topk")] == 8 * 11 and rows[("torch", "torch-fp16-hook")] == 2048
        assert rows[("mpi", "powersgd")] == rows[("torch", "torch-powersgd-hook")] == 4 * 4 * (32 + 32)
        kept = dict(zip([o.decode() for o in comp["op"][()]], comp["kept"][()]))
        assert kept["topk"] == kept["topk-torch"] == 11
        assert tgt["name"].shape == (len(targets),) and set(tgt["met"][()]) <= {-1, 0, 1}
        small = f["small"]
        assert small["op"].shape == (2 * (1 + len(ops)),) and (small["t_collective"][()] > 0).all()
        assert sum(t.startswith("target mpi: sign collective at 4KiB beyond") for t in targets) == 1


def test_unknown_backend_is_one_clear_error(hpcgan):
    r = hpcgan(2, "bench", "comm", "--backends", "nccl2", "--max-size", "1KiB")
    assert r.returncode == 2 and "unknown backend 'nccl2'; valid: horovod, mpi, torch" in r.stderr
    assert r.stderr.count("hpcgan: error:") == 1


def test_the_16_bit_sums_are_judged_against_dense_on_mpi_and_horovods_fp16_on_horovod():
    size = 4 * SIGN_TARGET_ELEMENTS
    times = {("mpi", "dense"): 6.0, ("mpi", "dense-fp16"): 6.6, ("mpi", "dense-bf16"): 9.0, ("mpi", "fp16"): 20.0,
             ("horovod", "fp16"): 10.0, ("horovod", "bf16"): 12.0, ("horovod", "hvd-fp16"): 10.0,
             ("horovod", "dense"): 6.0}
    rows = [{"backend": b, "op": o, "size": s, "t_median": t} for (b, o), t in times.items() for s in (4096, size)]
    got = {t.name: (round(t.value, 6), t.hi, t.met) for t in transport_targets(rows)}
    assert got["mpi: dense-fp16 / dense allreduce time at 24.03MiB"] == (1.1, 1.2, 1)
    assert got["mpi: dense-bf16 / dense allreduce time at 24.03MiB"] == (1.5, 1.2, 0)
    assert got["horovod: fp16 / hvd-fp16 allreduce time at 24.03MiB"] == (1.0, 1.1, 1)
    assert got["horovod: bf16 / hvd-fp16 allreduce time at 24.03MiB"] == (1.2, 1.1, 0)
    fp16 = got["mpi: fp16 / dense allreduce time at 24.03MiB"]
    assert fp16[0] == round(20 / 6, 6) and math.isnan(fp16[1]) and fp16[2] == -1, "with its casts: no goal"
    assert not any("4KiB" in name and "peer" not in name for name in got)


def test_the_small_message_target_charges_what_the_exchange_adds_to_the_compressors_own_work():
    from hpcgan.benchmarks.comm import small_message_targets
    small = [{"backend": "mpi", "op": "dense", "t_collective": 10e-6, "t_own": 0.0},
             {"backend": "mpi", "op": "sign", "t_collective": 70e-6, "t_own": 45e-6},
             {"backend": "mpi", "op": "powersgd", "t_collective": 90e-6, "t_own": 50e-6},
             {"backend": "mpi", "op": "topk-torch", "t_collective": 90e-6, "t_own": 20e-6},
             {"backend": "torch", "op": "dense", "t_collective": 100e-6, "t_own": 0.0},
             {"backend": "torch", "op": "sign", "t_collective": 400e-6, "t_own": 45e-6}]
    got = {t.name.split(" collective")[0]: (round(t.value, 6), t.met) for t in small_message_targets(small)}
    assert got == {"mpi: sign": (2.5, 1), "mpi: powersgd": (4.0, 0), "mpi: topk-torch": (7.0, -1),
                   "torch: sign": (3.55, 0)}


def test_own_decode_adds_every_ranks_payload_for_a_gathered_compressor_and_decompresses_a_sum_once():
    import torch

    from hpcgan.benchmarks.comm import own_decode
    from hpcgan.compress import build_compressor
    x = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    for name, factor in (("sign", 3), ("fp16", 1)):
        c = build_compressor(name)
        payload, ctx = c.compress(x, [x.numel()])
        once = c.decompress(payload, ctx)
        assert torch.equal(own_decode(c, payload, ctx, 3)(), factor * once), name
