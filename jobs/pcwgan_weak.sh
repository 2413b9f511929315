#!/usr/bin/env bash
# Weak scaling of pcwgan, 1 -> 2 ranks, in one sweep, at a constant number of generators per rank:
# digits has C = 10 labels, so 1 rank x R=1 and 2 ranks x R=2 (independent seeds per label) both
# train 10 (label, replica) units per rank. Efficiency = time per step at 1 rank / at 2 ranks
# (median over timed steps of the slowest rank). The 1-rank run is pinned to one core so both runs
# use one core and one thread per rank.
#   jobs/pcwgan_weak.sh [OUT_DIR]      (STEPS=N to change the 200 steps per run)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$here/results/pcwgan_weak}"
mpiexec="${MPIEXEC:-$here/.venv/bin/mpiexec}"
python="${PYTHON:-$here/.venv/bin/python}"
common=(train --algo pcwgan --data digits --steps "${STEPS:-200}" --batch-size 32 --width 128
        --lr 1e-4 --beta2 0.9 --scaling weak --log-every 100 --force)
mkdir -p "$out"
taskset -c 0 "$mpiexec" -n 1 "$python" -m mpi4py -m hpcgan "${common[@]}" --replicas 1 --out "$out/p1.h5"
"$mpiexec" -n 2 "$python" -m mpi4py -m hpcgan "${common[@]}" --replicas 2 --out "$out/p2.h5"
"$python" - "$out" <<'PY'
import sys
from hpcgan.results import load_run
one, two = (load_run(f"{sys.argv[1]}/p{p}.h5") for p in (1, 2))
t1, t2 = one.step_time(), two.step_time()
print(f"pcwgan weak scaling (10 units/rank): {1e3*t1:.1f} ms/step at 1 rank, {1e3*t2:.1f} ms/step at 2 ranks, "
      f"efficiency {t1/t2:.3f}; bytes sent {one.total_bytes()} / {two.total_bytes()}")
PY
