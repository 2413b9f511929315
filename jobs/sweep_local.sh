#!/usr/bin/env bash
# The local scaling study, a measurement on this 2-core machine: weak and strong sweeps of sync,
# dqgan (1-bit + EF), dposg (ring) and pcwgan training DCGAN-32 on digits at 1 and 2 ranks, one
# thread per rank, REPEATS seeds each, then `hpcgan report` (efficiency with 95% CIs over the
# repeats; the report states the widest CI against the 0.05 target and flags noisy runs).
#   bash jobs/sweep_local.sh            -> results/local_scaling/, reports/local_scaling/report.md
# Env: OUT, REPORT, RANKS (1,2), REPEATS (3), STEPS (300; pcwgan: PCWGAN_STEPS, 40), WIDTH (16),
#      SCALINGS (weak,strong), DRY_RUN=1 (print the launch lines).
# Design: a step of tens of milliseconds (sync ~25 ms, pcwgan's 5 critic updates ~240 ms per step
# on one quiet core), not the 3 ms toy step whose timing measured the scheduler; about 8 s of
# training per run after ~8 s of start-up. 4 algorithms x 2 scalings x 2 rank counts x 3 repeats
# = 48 runs: about 15 minutes on a quiet 2-core machine (estimated from the CPU time per step and
# per start-up of a trial run). Ranks beyond the cores would measure time-sharing, not scaling.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
out="${OUT:-$root/results/local_scaling}"
report="${REPORT:-$root/reports/local_scaling}"
dry=(); [[ "${DRY_RUN:-0}" == 1 ]] && dry=(--dry-run)
# Same model, data and batch for every algorithm; the per-algorithm flags are what each needs:
# DQGAN's 1-bit compressor, DPOSG's optimistic Adam on a ring, and pcwgan's labels (weak: 2 per
# rank; strong: all 10 spread over the ranks) and fewer steps (each is n_critic + 1 updates).
common=(--algos sync,dqgan,dposg,pcwgan --ranks "${RANKS:-1,2}" --repeats "${REPEATS:-3}" --threads 1
        --out "$out" --data digits --model dcgan32 --width "${WIDTH:-16}" --batch-size 32
        --steps "${STEPS:-300}" --warmup-steps 10 --eval-every 0
        --algo-flags 'dqgan: --compressor sign' --algo-flags 'dposg: --optimizer oadam --topology ring'
        --algo-flags "pcwgan: --steps ${PCWGAN_STEPS:-40} --warmup-steps 5")
declare -A labels=([weak]=2 [strong]=10)
IFS=, read -ra scalings <<< "${SCALINGS:-weak,strong}"
for scaling in "${scalings[@]}"; do
  "$python" -m hpcgan sweep --scaling "$scaling" "${common[@]}" --algo-flags "pcwgan: --labels ${labels[$scaling]}" \
    "${dry[@]}"
done
[[ "${DRY_RUN:-0}" == 1 ]] || "$python" -m hpcgan report "$out" --out "$report"
