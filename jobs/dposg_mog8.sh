#!/usr/bin/env bash
# DPOSG on a ring vs DPOSG on the complete graph vs synchronous allreduce, same settings, on mog8.
#   [LR=5e-4] jobs/dposg_mog8.sh [NP] [STEPS] [OPTIMIZER]      (defaults: 4 ranks, 3500 steps, oadam)
# Writes results/dposg_mog8/{dposg_ring,dposg_complete,sync}_OPTIMIZER.h5 and prints `hpcgan summary`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
np="${1:-4}"; steps="${2:-3500}"; opt="${3:-oadam}"
out="$here/results/dposg_mog8"; mkdir -p "$out"
run() { "$here/jobs/mpirun_local.sh" "$np" train --data mog8 --z-dim 2 --batch-size 128 --lr "${LR:-5e-4}" \
          --beta1 0.0 --beta2 0.9 --optimizer "$opt" --steps "$steps" --eval-every 1000 \
          --consensus-every 50 --log-every 500 --force "$@"; }
run --algo dposg --topology ring     --out "$out/dposg_ring_$opt.h5"
run --algo dposg --topology complete --out "$out/dposg_complete_$opt.h5"
run --algo sync                      --out "$out/sync_$opt.h5"
"$here/.venv/bin/python" -m hpcgan summary "$out"
