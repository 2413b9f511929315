"""DQGAN arithmetic in process: 4 workers as threads, the virtual-iterate invariants of theory
(OMD) and quality ((O)Adam) modes, a step sent in parts (as buckets send it)."""
from __future__ import annotations

import threading

import pytest
import torch

from hpcgan.algorithms.dqgan import (DQGANUpdate, ExtrapolateAfterAverage, ExtrapolateInMessage,
                                     NoExtrapolation)
from hpcgan.comm.base import Communicator
from hpcgan.compress.base import Identity
from hpcgan.compress.sign import ScaledSign
from hpcgan.compress.sparse import TopK, keep_counts
from hpcgan.config import OptimConfig
from hpcgan.exchange import Exchange
from hpcgan.gan.optim import Direction


class ThreadComm(Communicator):
    """M in-process workers (one thread each) sharing slots; collectives meet at a barrier."""

    def __init__(self, rank: int, group: dict):
        super().__init__(rank, group["size"])
        self.group = group

    def _exchange(self, t):
        g = self.group
        g["slots"][self.rank] = t.reshape(-1).clone()
        g["barrier"].wait()
        out = list(g["slots"])
        g["barrier"].wait()
        return out

    def _allgather(self, t, out, counts):
        torch.cat(self._exchange(t), out=out)

    def _allreduce(self, t):
        parts = self._exchange(t)
        total = parts[0].clone()
        for p in parts[1:]:
            total += p
        t.copy_(total.view_as(t))

    def _broadcast(self, t, root):
        t.copy_(self._exchange(t)[root].view_as(t))

    def barrier(self):
        self.group["barrier"].wait()


def run_workers(M: int, fn):
    """fn(rank, comm) in M threads; returns their results in rank order (re-raises failures)."""
    group = {"size": M, "slots": [None] * M, "barrier": threading.Barrier(M, timeout=30)}
    results, errors = [None] * M, []

    def target(r):
        try:
            results[r] = fn(r, ThreadComm(r, group))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            group["barrier"].abort()

    threads = [threading.Thread(target=target, args=(r,)) for r in range(M)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


N_G, N_D = (6, 4), (5, 3)                      # per-tensor sizes of "G" and "D"
D_ALL = sum(N_G) + sum(N_D)
SIZES = list(N_G) + list(N_D)


def game(rank: int):
    """Worker rank's stochastic linear game field F_m(x) = A_m x + c_m (float64)."""
    g = torch.Generator().manual_seed(100 + rank)
    A = torch.randn(D_ALL, D_ALL, generator=g, dtype=torch.float64) * 0.3
    A = A - A.T + 0.05 * torch.eye(D_ALL, dtype=torch.float64)   # mostly rotational, like a GAN
    return A, torch.randn(D_ALL, generator=g, dtype=torch.float64)


EXTRAPOLATION = {"A": ExtrapolateInMessage, "B": ExtrapolateAfterAverage, "none": NoExtrapolation}


class RecordingDirection(Direction):
    """A Direction that keeps the last d_t it gave, for the checks."""

    def of(self, g, part):
        self.last = super().of(g, part)
        return self.last


def update(compressor, rule, lr, comm, ef=True, optimizer="omd"):
    like = torch.zeros(D_ALL, dtype=torch.float64)
    q = DQGANUpdate(lr, RecordingDirection(OptimConfig(optimizer=optimizer, beta1=0.5, beta2=0.9), like),
                    EXTRAPOLATION[rule](), like)
    return q, Exchange(comm, compressor, ef)


def residual(exchange: Exchange, like: torch.Tensor) -> torch.Tensor:
    e = exchange.memory.residuals.get("x")
    return torch.zeros_like(like) if e is None else e.clone()


def trajectory(rank, comm, compressor, rule, steps=30, lr=0.05, ef=True, optimizer="omd"):
    """x_t, the averaged gradient, the residual e_t and the local directions d_t of one worker."""
    A, c = game(rank)
    q, exchange = update(compressor, rule, lr, comm, ef, optimizer)
    x = torch.linspace(-1, 1, D_ALL, dtype=torch.float64)
    xs, gbar, res, ds = [x.clone()], [], [residual(exchange, x)], []
    for _ in range(steps):
        g = A @ x + c
        gbar.append(comm.allreduce_(g.clone(), average=True))  # for the check only
        q.begin()
        p = q.message(slice(None), g)
        ds.append(q.direction.last.clone())
        q.apply(x, exchange.run("x", p, SIZES))
        xs.append(x.clone())
        res.append(residual(exchange, x))
    return xs, gbar, res, comm.calls, ds


def test_variant_a_virtual_iterate_follows_exact_omd_with_the_averaged_gradient():
    M, lr = 4, 0.05
    out = run_workers(M, lambda r, comm: trajectory(r, comm, TopK(ratio=0.25), "A", lr=lr))
    xs, gbar = out[0][0], out[0][1]
    for r in range(1, M):
        assert all(torch.equal(a, b) for a, b in zip(xs, out[r][0])), "workers apply the same Delta_t"
    virtual = [xs[t] - torch.stack([o[2][t] for o in out]).mean(0) for t in range(len(xs))]
    assert any(float(o[2][-1].abs().max()) > 1e-3 for o in out), "top-k must leave residuals"
    prev = torch.zeros(D_ALL, dtype=torch.float64)
    for t in range(len(gbar)):
        want = virtual[t] - lr * (2 * gbar[t] - prev)
        assert torch.allclose(virtual[t + 1], want, rtol=0, atol=1e-12), f"step {t}"
        prev = gbar[t]


@pytest.mark.parametrize("rule", ["A", "B"])
def test_identity_dqgan_equals_omd_with_the_averaged_gradient(rule):
    lr = 0.05
    out = run_workers(3, lambda r, comm: trajectory(r, comm, Identity(), rule, lr=lr))
    xs, gbar = out[0][0], out[0][1]
    prev = torch.zeros(D_ALL, dtype=torch.float64)
    for t in range(len(gbar)):
        assert torch.allclose(xs[t + 1], xs[t] - 2 * lr * gbar[t] + lr * prev, rtol=0, atol=1e-12)
        prev = gbar[t]


def test_one_collective_per_step_and_bytes_are_the_payload():
    steps = 7
    out = run_workers(2, lambda r, comm: (trajectory(r, comm, TopK(ratio=0.25), "A", steps=steps), comm.bytes_sent))
    (_, _, _, calls, _), sent = out[0]
    assert calls == 2 * steps  # one for the check's allreduce, one exchange
    k = sum(keep_counts(0.25, SIZES))  # top-k of each tensor of G and D
    assert sent == steps * (D_ALL * 8 + k * (4 + 4))   # check allreduce (fp64) + fp32 values and int32 indices


def test_without_error_feedback_there_is_no_residual():
    out = run_workers(2, lambda r, comm: trajectory(r, comm, TopK(ratio=0.25), "A", steps=5, ef=False))
    assert all(float(e.abs().max()) == 0 for o in out for e in o[2])


@pytest.mark.parametrize("optimizer, rule", [("oadam", "A"), ("omd", "B"), ("adam", "none")])
def test_a_step_sent_in_parts_is_the_step_sent_whole(optimizer, rule):
    """Steps 1b-2 are elementwise: messages of the parts (in backward's order, as buckets send
    them) put together are the message of the whole vector, step after step."""
    whole, _ = update(Identity(), rule, 0.1, None, optimizer=optimizer)
    parts, _ = update(Identity(), rule, 0.1, None, optimizer=optimizer)
    cuts = [slice(10, D_ALL), slice(4, 10), slice(0, 4)]
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        g = torch.randn(D_ALL, generator=gen, dtype=torch.float64)
        whole.begin()
        parts.begin()
        want = whole.message(slice(None), g)
        got = torch.empty_like(want)
        for part in cuts:
            got[part] = parts.message(part, g[part])
        assert torch.equal(got, want)


@pytest.mark.parametrize("optimizer, rule", [("oadam", "A"), ("adam", "none")])
def test_quality_mode_virtual_iterate_follows_dense_local_adam_with_the_averaged_step(optimizer, rule):
    """Each worker's own (O)Adam direction u^m, EF on the step in parameter units: the virtual
    iterate moves by the average over workers of the dense local step, however coarse Q is."""
    M, lr = 4, 0.01
    out = run_workers(M, lambda r, comm: trajectory(r, comm, ScaledSign(), rule, lr=lr, optimizer=optimizer))
    xs = out[0][0]
    for r in range(1, M):
        assert all(torch.equal(a, b) for a, b in zip(xs, out[r][0])), "workers apply the same Delta_t"
    assert any(float(o[2][-1].abs().max()) > 1e-6 for o in out), "1-bit must leave residuals"
    virtual = [xs[t] - torch.stack([o[2][t] for o in out]).mean(0) for t in range(len(xs))]
    prev = [torch.zeros(D_ALL, dtype=torch.float64) for _ in range(M)]
    for t in range(len(xs) - 1):
        if optimizer == "oadam":
            step = torch.stack([lr * (2 * o[4][t] - p) for o, p in zip(out, prev)]).mean(0)
        else:
            step = torch.stack([lr * o[4][t] for o in out]).mean(0)
        assert torch.allclose(virtual[t + 1], virtual[t] - step, rtol=0, atol=1e-12), f"step {t}"
        prev = [o[4][t] for o in out]
    residual = max(float(o[2][t].norm()) for o in out for t in range(len(xs)))
    step_norm = max(float((lr * o[4][t]).norm()) for o in out for t in range(len(xs) - 1))
    assert residual < 10 * step_norm, "the residual stays of the order of one step (parameter units)"


def test_identity_quality_mode_is_dense_local_oadam_averaged():
    lr = 0.01
    out = run_workers(2, lambda r, comm: trajectory(r, comm, Identity(), "A", lr=lr, optimizer="oadam"))
    xs = out[0][0]
    prev = [torch.zeros(D_ALL, dtype=torch.float64)] * 2
    for t in range(len(xs) - 1):
        want = xs[t] - torch.stack([lr * (2 * o[4][t] - p) for o, p in zip(out, prev)]).mean(0)
        assert torch.allclose(xs[t + 1], want, rtol=0, atol=1e-12)
        prev = [o[4][t] for o in out]


def test_state_dict_holds_residuals_direction_and_previous_step():
    comm = run_workers(1, lambda r, c: c)[0]
    q, exchange = update(TopK(ratio=0.25), "A", 0.1, comm, optimizer="oadam")
    g = torch.arange(float(D_ALL), dtype=torch.float64)
    q.begin()
    exchange.run("x", q.message(slice(None), g), SIZES)
    state, sent = q.state_dict(), exchange.state_dict()
    assert set(sent["memory"]) == {"x"} and state["direction"]["t"] == 1
    assert torch.equal(state["extrapolation"]["prev"], Direction(q.direction.cfg, g)(g))
    q2, exchange2 = update(TopK(ratio=0.25), "A", 0.1, None, optimizer="oadam")
    q2.load_state_dict(state)
    exchange2.load_state_dict(sent)
    assert torch.equal(residual(exchange2, g), residual(exchange, g))
    assert torch.equal(q2.direction.m, q.direction.m) and q2.direction.t == 1


def test_scale_groups_cover_the_buffer_at_every_granularity():
    from hpcgan.algorithms.dqgan import scale_groups

    sizes = [6, 4, 9]
    assert scale_groups(sizes, "tensor", 4) == sizes
    assert scale_groups(sizes, "network", 4) == [19]
    assert scale_groups(sizes, "block", 4) == [4, 4, 4, 4, 3] and sum(scale_groups(sizes, "block", 19)) == 19
