"""DPOSG (ring, t = 1) vs dense-allreduce sync under an emulated per-message latency, one invocation.

    .venv/bin/python jobs/dposg_latency.py [--np 4] [--steps 300] [--latency 0.005] [--out results/dposg_latency]

Runs both algorithms with identical settings, then prints per algorithm the measured step time and
its measured communication part, next to the emulated network time per step from the cost model
of docs/ALGORITHMS.md section 5 with latency alpha per message (bandwidth not emulated):
    sync (ring allreduce)          2 (M - 1) alpha
    DPOSG, t rounds, k neighbours  t alpha   (neighbours served in parallel; t k alpha if serial)
and the step time on the emulated network = measured step - measured comm + emulated comm.
Where the communicator recorded t_net_emulated itself (network emulation merged), that is shown too.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hpcgan.results.reader import load_run  # noqa: E402

COMMON = ["--data", "mog8", "--z-dim", "2", "--batch-size", "128", "--lr", "5e-4", "--beta1", "0.0",
          "--beta2", "0.9", "--optimizer", "oadam", "--eval-every", "0", "--eval-samples", "500",
          "--log-every", "100000", "--force"]
RUNS = {"sync": ["--algo", "sync"], "dposg_ring": ["--algo", "dposg", "--topology", "ring", "--gossip-rounds", "1"]}


def launch(np_: int, args: list[str]) -> None:
    mpiexec = os.environ.get("MPIEXEC", str(ROOT / ".venv/bin/mpiexec"))
    cmd = [mpiexec, "-n", str(np_), sys.executable, "-m", "mpi4py", "-m", "hpcgan", "train", *args]
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def model_delay(name: str, attrs: dict, M: int, alpha: float) -> float:
    if name == "sync":
        return 2 * (M - 1) * alpha
    return int(attrs.get("gossip_rounds", 1)) * alpha


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--np", type=int, default=4)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--latency", type=float, default=0.005)
    p.add_argument("--out", default=str(ROOT / "results/dposg_latency"))
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, extra in RUNS.items():
        launch(a.np, [*COMMON, *extra, "--steps", str(a.steps), "--net-latency", str(a.latency),
                      "--out", str(out / f"{name}.h5")])
    print(f"\n{a.np} ranks, emulated latency {1e3 * a.latency:g} ms/message, {a.steps} steps; "
          "ms per step: median over timed steps of the slowest rank (wall) / mean over ranks (phases)")
    head = ["run", "KB/step/rank", "measured step", "measured comm", "emulated comm (model)",
            "emulated (recorded)", "step on emulated net"]
    rows = []
    for name in RUNS:
        r = load_run(out / f"{name}.h5")
        ph = r.phase_times()
        step, comm = r.step_time(), ph["t_comm"]
        emu = model_delay(name, r.attrs, r.world_size, a.latency)
        rec = ph["t_net_emulated"]
        kb = float(np.nanmean(r.timed("bytes_sent"))) / 1e3
        rows.append([name, f"{kb:.1f}", f"{1e3 * step:.2f}", f"{1e3 * comm:.2f}", f"{1e3 * emu:.2f}",
                     f"{1e3 * rec:.2f}" if rec > 0 else "n/a", f"{1e3 * (step - comm + emu):.2f}"])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    for row in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
