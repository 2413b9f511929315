"""PhaseTimer: device synchronisation at phase boundaries (a fake CUDA device on CPU) and CPU time."""
import time

import pytest
import torch

from hpcgan.results.timer import PhaseTimer, device_sync


def burn(seconds: float) -> None:
    """Spin this thread for ``seconds`` of its CPU time, as the CUDA runtime does while it waits
    (thread time: process time would also count other threads' CPU and end early)."""
    c0 = time.thread_time()
    while time.thread_time() - c0 < seconds:
        pass


def settle() -> None:
    """Let OpenMP workers of earlier tests' torch ops stop spinning: their CPU counts in the
    process time that PhaseTimer reports as ``cpu``."""
    time.sleep(0.5)


def test_cpu_timer_never_synchronises():
    assert device_sync(None) is None and device_sync(torch.device("cpu")) is None
    settle()
    timer = PhaseTimer(torch.device("cpu"))
    timer.begin()
    with timer("compute"):
        burn(0.02)
    out = timer.take()
    assert out["t_compute"] >= 0.02 and out["cpu"] >= 0.02 and out["t_comm"] == 0.0


def test_cuda_phase_includes_the_work_it_launched_not_earlier_work_and_cpu_excludes_waits(monkeypatch):
    """On entry the fake device finishes 0.5 s of work queued before the phase, on exit the
    phase's own 0.05 s: the phase is charged only with its own, and ``cpu`` with neither wait."""
    waits = [0.5, 0.05, 0.5, 0.05]
    calls = []

    def fake_synchronize(device=None):
        calls.append(device)
        burn(waits[len(calls) - 1])

    monkeypatch.setattr(torch.cuda, "synchronize", fake_synchronize)
    settle()
    device = torch.device("cuda", 0)
    timer = PhaseTimer(device)
    timer.begin()
    with timer("compute"):
        pass
    with timer("comm"):
        pass
    out = timer.take()
    assert calls == [device] * 4, "one synchronisation of this device at each end of each phase"
    for phase in ("t_compute", "t_comm"):
        assert 0.05 <= out[phase] < 0.5, out
    assert out["cpu"] < 0.05, out



@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the real-GPU timing runs where CUDA exists")
def test_a_phase_on_a_real_gpu_lasts_until_its_kernels_finish():
    device, cycles = torch.device("cuda", 0), 200_000_000  # about 0.1 s of GPU spinning
    torch.cuda._sleep(1000)
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    torch.cuda._sleep(cycles)
    torch.cuda.synchronize(device)
    kernel = time.perf_counter() - t0
    timer = PhaseTimer(device)
    timer.begin()
    with timer("compute"):
        torch.cuda._sleep(cycles)  # returns at once: the kernel runs asynchronously
    out = timer.take()
    assert out["t_compute"] >= 0.8 * kernel, (out, kernel)
