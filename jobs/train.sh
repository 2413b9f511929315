#!/usr/bin/env bash
# Train one algorithm on every task of the allocation: jobs/train.sh ALGO [extra hpcgan train flags].
# Used by the per-algorithm Slurm scripts; NTASKS defaults to the allocation's task count.
#   DATA (mog8), STEPS (2000), BATCH (64 per rank), OUT (results/<job>/<algo>.h5)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
algo="${1:?usage: $0 ALGO [hpcgan train flags]}"; shift
ntasks="${NTASKS:-${SLURM_NTASKS:-$GPUS_PER_NODE}}"
out="${OUT:-$HPCGAN_ROOT/results/${SLURM_JOB_ID:-local}/${algo}.h5}"
[[ "${DRY_RUN:-0}" == 1 ]] || mkdir -p "$(dirname "$out")"
hpcgan_srun "$ntasks" train --algo "$algo" --data "${DATA:-mog8}" --steps "${STEPS:-2000}" \
    --batch-size "${BATCH:-64}" --out "$out" "$@"
