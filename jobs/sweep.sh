#!/usr/bin/env bash
# Scaling sweep inside a Slurm allocation: jobs/sweep.sh weak|strong [extra hpcgan sweep/train flags].
# For each rank count N in RANKS it calls `hpcgan sweep --ranks N` with an srun launcher of
# ceil(N / GPUS_PER_NODE) nodes, min(N, GPUS_PER_NODE) tasks per node, one GPU and CPUS_PER_TASK
# cores per task (--cpu-bind=cores). Finished runs are skipped, so a re-submitted job resumes.
# A failed run does not stop the sweep: every rank count is tried, then the failed runs are listed
# with their logs and the script exits non-zero. The driver's output per rank count is kept in
# OUT/sweep_<scaling>_n<N>.log.
#   ALGOS (sync,dqgan,dposg,pcwgan), RANKS (1,2,4,8), REPEATS (3), DATA (mog8), STEPS (2000),
#   BATCH (64: per rank for weak, global for strong), OUT (results/sweep_<scaling>), DRY_RUN=1,
#   LABELS (1: pcwgan labels per rank in weak scaling; strong spreads all labels over the ranks)
set -euo pipefail
jobs_dir="${HPCGAN_ROOT:+$HPCGAN_ROOT/jobs}"
[[ -n "$jobs_dir" ]] || jobs_dir="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
[[ -f "$jobs_dir/env.sh" ]] || jobs_dir="$jobs_dir/jobs"
source "$jobs_dir/env.sh"
scaling="${1:?usage: $0 weak|strong [flags]}"; shift
out="${OUT:-$HPCGAN_ROOT/results/sweep_$scaling}"
dry=(); [[ "${DRY_RUN:-0}" == 1 ]] && dry=(--dry-run)
IFS=, read -r -a ranks <<< "${RANKS:-1,2,4,8}"
per_algo=(--algo-flags 'dposg: --topology ring')  # each algorithm's own defaults otherwise (hpcgan train --help)
[[ "$scaling" == weak ]] && per_algo+=(--algo-flags "pcwgan: --labels ${LABELS:-1}")
failed=()
for n in "${ranks[@]}"; do
    flags="$(hpcgan_srun_flags "$n")"
    tpl="--ntasks={n} "; flags="${flags/--ntasks=$n /$tpl}"  # hpcgan sweep fills in {n}
    cmd=("$HPCGAN_PYTHON" -m hpcgan sweep --scaling "$scaling" --ranks "$n" --algos "${ALGOS:-sync,dqgan,dposg,pcwgan}"
         --repeats "${REPEATS:-3}" --launcher "srun $flags" --out "$out" --data "${DATA:-mog8}"
         --steps "${STEPS:-2000}" --batch-size "${BATCH:-64}" "${per_algo[@]}" "${dry[@]}" "$@")
    if [[ "${DRY_RUN:-0}" == 1 ]]; then "${cmd[@]}"; continue; fi
    mkdir -p "$out"
    log="$out/sweep_${scaling}_n$n.log"
    "${cmd[@]}" 2>&1 | tee "$log" || failed+=("$n")
done
if (( ${#failed[@]} )); then
    echo "sweep: runs failed at ${#failed[@]} of ${#ranks[@]} rank counts (N = ${failed[*]}):"
    for n in "${failed[@]}"; do
        log="$out/sweep_${scaling}_n$n.log"
        # hpcgan sweep names each failed run and its log; a driver that failed before any run has only its own
        grep -h " FAILED " "$log" | sed -E 's/^.*[[:space:]]([[:alnum:]_]+)[[:space:]]+FAILED \(exit ([0-9]+)\); last lines of (.*):$/  \1 (exit \2): \3/' \
            || echo "  N=$n: the sweep driver failed: $log"
    done
    exit 1
fi
