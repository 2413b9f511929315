#!/usr/bin/env bash
# The local scaling study: weak and strong sweeps of sync, dqgan (1-bit + EF), dposg (ring) and
# pcwgan on mog8 at 1, 2 and 4 ranks on this machine (ranks beyond the cores are oversubscribed),
# one thread per rank, then `hpcgan report`. Resumable: finished runs are skipped.
#   bash jobs/sweep_local.sh            -> results/local_scaling/, reports/local_scaling/report.md
# Env: OUT, REPORT, RANKS (1,2,4), STEPS (1000), REPEATS (1), DRY_RUN=1 (print the launch lines).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
out="${OUT:-$root/results/local_scaling}"
report="${REPORT:-$root/reports/local_scaling}"
dry=(); [[ "${DRY_RUN:-0}" == 1 ]] && dry=(--dry-run)
# Same model, data and Adam settings for every algorithm (the Makefile's mog8 settings); the
# per-algorithm flags are what each algorithm needs: DPOSG's optimistic Adam, pcwgan's evaluation
# at the end only and its labels (weak: 2 per rank; strong: all 8 spread over the ranks).
common=(--algos sync,dqgan,dposg,pcwgan --ranks "${RANKS:-1,2,4}" --repeats "${REPEATS:-1}" --threads 1
        --out "$out" --data mog8 --z-dim 2 --lr 5e-4 --beta1 0.0 --beta2 0.9 --batch-size 128
        --steps "${STEPS:-1000}" --eval-every 0
        --algo-flags 'dqgan: --compressor sign' --algo-flags 'dposg: --optimizer oadam --topology ring')
"$python" -m hpcgan sweep --scaling weak "${common[@]}" --algo-flags 'pcwgan: --labels 2' "${dry[@]}"
"$python" -m hpcgan sweep --scaling strong "${common[@]}" --algo-flags 'pcwgan: --labels 8' "${dry[@]}"
[[ "${DRY_RUN:-0}" == 1 ]] || "$python" -m hpcgan report "$out" --out "$report"
