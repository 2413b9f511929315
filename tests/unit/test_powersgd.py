"""PowerSGD: the two-round protocol through hpcgan.exchange.collect (M workers as threads), its
error feedback, warm start, checkpointed state; exact on low-rank matrices."""
from __future__ import annotations

import pytest
import torch

from hpcgan.compress.base import roundtrip
from hpcgan.exchange import Exchange, collect
from hpcgan.compress.powersgd import PowerSGD, layout
from test_dqgan import run_workers

SIZES = [4096, 64, 2048, 300]   # two matrices (64 x 64, 32 x 64) and two dense tensors


def low_rank(rows: int, cols: int, r: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, r, generator=g) @ torch.randn(r, cols, generator=g)


def test_layout_views_big_tensors_as_power_of_two_wide_matrices_and_keeps_small_ones_dense():
    lay = layout(tuple(SIZES), 4)
    assert [(m.start, m.rows, m.cols) for m in lay.matrices] == [(0, 64, 64), (4160, 32, 64)]
    assert lay.dense == ((4096, 64), (6208, 300))
    odd = layout((1000,), 4).matrices[0]
    assert (odd.rows, odd.cols, odd.full, odd.tail) == (32, 32, 31, 8)


@pytest.mark.parametrize("n", [4096, 1000])
def test_rank_r_matrices_come_back_exactly(n):
    """span(M Q) is M's column space when rank M <= r, with whole rows or a zero-padded last row."""
    m = layout((n,), 4).matrices[0]
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(m.rows, 3, generator=g), torch.randn(3, m.cols, generator=g)
    if m.tail:  # the last row is v[2], zero where the matrix is padded
        u[-1] = torch.tensor([0.0, 0.0, 1.0])
        v[2, m.tail:] = 0.0
    x = (u @ v).reshape(-1)[:n].clone()
    y = roundtrip(PowerSGD(seed=5), x, [n])
    torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-4)


def test_warm_start_iterates_towards_the_top_subspace_and_state_resumes_it():
    g = torch.Generator().manual_seed(1)
    x = (low_rank(64, 64, 8, 1) + 0.01 * torch.randn(64, 64, generator=g)).reshape(-1)
    c = PowerSGD()
    errs = [float((roundtrip(c, x, [4096]) - x).norm()) for _ in range(6)]
    assert errs[-1] < 0.8 * errs[0], f"warm start must improve the approximation: {errs}"
    resumed = PowerSGD(seed=123)
    resumed.load_state_dict(c.state_dict())
    assert torch.equal(roundtrip(resumed, x, [4096]), roundtrip(c, x, [4096]))


def worker_inputs(rank: int, steps: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(50 + rank)
    return [torch.randn(sum(SIZES), generator=g) for _ in range(steps)]


def test_aggregate_is_the_projection_of_the_mean_onto_the_summed_p():
    """Delta = P^ Q^T / M with P^ = orth(sum_m M_m Q), Q = sum_m M_m^T P^; dense tensors averaged."""
    M = 3

    def work(rank, comm):
        c = PowerSGD()
        x = worker_inputs(rank, 1)[0]
        return collect(comm, c, *c.compress(x, SIZES)), comm.calls, c.warm[tuple(SIZES)]

    out = run_workers(M, work)
    xs = [worker_inputs(r, 1)[0] for r in range(M)]
    mean = torch.stack(xs).mean(0)
    want = mean.clone()
    q0 = PowerSGD()._qt(tuple(SIZES), layout(tuple(SIZES), 4), "cpu")
    for m, qt in zip(layout(tuple(SIZES), 4).matrices, q0):
        ms = [x[m.start:m.start + m.n].view(m.rows, m.cols) for x in xs]
        p_hat = torch.linalg.qr(sum(a @ qt.T for a in ms)).Q
        want[m.start:m.start + m.n] = (p_hat @ p_hat.T @ torch.stack(ms).mean(0)).reshape(-1)
    for delta, calls, warm in out:
        assert calls == 2, "two allreduces (the size check is an uncounted control message)"
        torch.testing.assert_close(delta, want, rtol=1e-4, atol=1e-5)
        assert all(torch.equal(a, b) for a, b in zip(warm, out[0][2])), "every rank keeps the same warm start"
    assert all(torch.equal(o[0], out[0][0]) for o in out), "every rank holds the same Delta"


def test_error_feedback_residuals_average_to_the_dense_mean_minus_the_applied_step():
    """What the DQGAN virtual-iterate invariant needs: mean_m e_{t+1}^m = mean_m p_t^m - Delta_t,
    with rank m's own projection P^ P^^T p_t^m subtracted (known only after both rounds); two
    buffers, each its own exchange, as two buckets are."""
    M, steps, parts = 3, 4, {"G": SIZES, "D": [2048, 7]}

    def work(rank, comm):
        ex = Exchange(comm, PowerSGD())
        g = torch.Generator().manual_seed(rank)
        history = []
        for _ in range(steps):
            xs = {k: torch.randn(sum(s), generator=g) for k, s in parts.items()}
            p = {k: ex.memory.compensate(k, xs[k]) for k in parts}
            if rank == 0 and not history:
                c = PowerSGD()
                with pytest.raises(RuntimeError, match="both rounds"):
                    c.local(*c.compress(xs["G"], SIZES))
            delta = torch.cat([ex.run(k, xs[k], s) for k, s in parts.items()])
            history.append((torch.cat([p["G"], p["D"]]), delta, torch.cat([ex.memory.residuals[k] for k in parts])))
        return history

    out = run_workers(M, work)
    for t in range(steps):
        p_mean = torch.stack([o[t][0] for o in out]).mean(0)
        e_mean = torch.stack([o[t][2] for o in out]).mean(0)
        torch.testing.assert_close(e_mean, p_mean - out[0][t][1], rtol=0, atol=1e-5)
    assert float(out[0][-1][2].abs().max()) > 1e-2, "rank-4 compression leaves residuals"


def test_the_c_products_agree_with_torchs_matmul(monkeypatch):
    """powersgd.c's three products against the torch path (summation order differs: tolerances)."""
    from hpcgan.compress import powersgd
    if powersgd._kernels() is None:
        pytest.skip("native kernels unavailable")
    sizes = (1000, 4096, 2048, 300, 70_001)
    x = torch.randn(sum(sizes), generator=torch.Generator().manual_seed(4))
    native = [roundtrip(PowerSGD(), x, sizes) for _ in range(2)]
    monkeypatch.setattr(powersgd, "_native", lambda t: None)
    fallback = roundtrip(PowerSGD(), x, sizes)
    assert torch.equal(native[0], native[1]), "deterministic"
    torch.testing.assert_close(native[0], fallback, rtol=1e-4, atol=1e-5)
