"""StopSignals: the first stop signal is a flag, a second of the same kind kills, handlers come back."""
import os
import signal
import subprocess
import sys

from hpcgan.signals import StopSignals


def test_the_first_signal_sets_a_flag_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        assert stop.received == 0
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == signal.SIGUSR1  # the first one is kept
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_signal_of_the_same_kind_takes_its_default_action():
    code = ("import os, signal, time\nfrom hpcgan.signals import StopSignals\n"
            "with StopSignals() as stop:\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n    print(stop.received, flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(5)\n    print('survived')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == [str(int(signal.SIGTERM))] and r.returncode == -signal.SIGTERM


def test_a_signal_during_start_up_is_held_for_the_training_loop():
    """Slurm sends its --signal warning once: one that comes before StopSignals exists (imports,
    data loading) must reach the loop, not kill the process or vanish; the original handlers come
    back afterwards."""
    code = ("import os, signal\nfrom hpcgan.signals import StopSignals, hold_early\n"
            "before = signal.getsignal(signal.SIGUSR1)\n"
            "hold_early()\nos.kill(os.getpid(), signal.SIGUSR1)\n"
            "with StopSignals() as stop:\n    print(stop.received, flush=True)\n"
            "print(signal.getsignal(signal.SIGUSR1) is before)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(int(signal.SIGUSR1)), "True"]
