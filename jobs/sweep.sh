#!/usr/bin/env bash
# Scaling sweep as Slurm job arrays: jobs/sweep.sh weak|strong [extra hpcgan sweep/train flags].
# Run it where you submit jobs (not inside an allocation). For each rank count N in RANKS it submits
# one job array, jobs/sweep_task.sbatch, sized to N: ceil(N / tasks per node) nodes, min(N, tasks
# per node) tasks per node and one GPU each (unless DEVICE=cpu; cores: CPUS_PER_TASK, else the node's
# cores shared out on the node). Array task
# i trains the i-th algorithm of ALGOS at N ranks, REPEATS seeds (`hpcgan sweep`, one srun per run);
# task 0 also runs the cost model's `hpcgan bench comm` and `bench sharing` at N >= 2. So each rank
# count waits for its own nodes only, and no allocation idles through the smaller runs.
# Finished runs are skipped, so submitting the same sweep again resumes it; a run stopped by the time
# limit (--signal USR1) checkpoints and its array task is requeued and continues it. Then:
#   hpcgan report $OUT --out reports/sweep_<scaling>
#   ALGOS (sync,dqgan,dposg,pcwgan), RANKS (1,2,4,8), REPEATS (3), DATA/MODEL (jobs/train.sh: CIFAR-10
#   with dcgan32 unless DATA=mog8 asks for the toy), STEPS (2000), BATCH (64: per rank for weak, global
#   for strong), OUT ($HPCGAN_RESULTS/sweep_<scaling>), TIME (each array task's time limit, 01:00:00),
#   LABELS (1: pcwgan labels per rank in weak scaling; strong spreads all labels over the ranks),
#   SBATCH_EXTRA (more sbatch flags, e.g. "--account=X --partition=gpu"), DRY_RUN=1 (print the sbatch lines)
set -euo pipefail
jobs_dir="${HPCGAN_ROOT:+$HPCGAN_ROOT/jobs}"
[[ -n "$jobs_dir" ]] || jobs_dir="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
[[ -f "$jobs_dir/env.sh" ]] || jobs_dir="$jobs_dir/jobs"
user_cpus="${CPUS_PER_TASK:-}" user_gpus="${GPUS_PER_NODE:-}"
source "$jobs_dir/env.sh"
# what env.sh derived from this (submit) host must not reach the compute nodes: they derive their own
unset_derived=(-u OMP_NUM_THREADS -u HPCGAN_GPUS_SAID -u TASKS_PER_NODE)
[[ -n "$user_cpus" ]] || unset_derived+=(-u CPUS_PER_TASK)
[[ -n "$user_gpus" ]] || unset_derived+=(-u GPUS_PER_NODE)
scaling="${1:?usage: $0 weak|strong [flags]}"; shift
[[ "$scaling" == weak || "$scaling" == strong ]] || { echo "hpcgan: error: scaling must be weak or strong" >&2; exit 2; }
export OUT="${OUT:-$HPCGAN_RESULTS/sweep_$scaling}"
IFS=, read -r -a ranks <<< "${RANKS:-1,2,4,8}"
IFS=, read -r -a algos <<< "${ALGOS:-sync,dqgan,dposg,pcwgan}"
[[ "${DRY_RUN:-0}" == 1 ]] || mkdir -p "$OUT"
for n in "${ranks[@]}"; do
    tpn="$TASKS_PER_NODE"; (( n < tpn )) && tpn="$n"
    if (( n % tpn )); then echo "hpcgan: error: $n tasks is not a multiple of $tpn tasks per node" >&2; exit 2; fi
    size=(--nodes=$(( n / tpn )) --ntasks="$n" --ntasks-per-node="$tpn")
    [[ -z "$user_cpus" ]] || size+=(--cpus-per-task="$user_cpus")  # else the whole node's cores (--exclusive)
    if [[ "$DEVICE" == cpu ]]; then size+=(--gpus-per-node=0)  # over the batch header's GPUs
    else
        [[ "${GPU_BIND:-}" == per_task ]] && size+=(--gpus-per-task=1) || size+=(--gpus-per-node="$tpn")
    fi
    # shellcheck disable=SC2206
    cmd=(env "${unset_derived[@]}" sbatch --parsable --array=0-$(( ${#algos[@]} - 1 )) --job-name="hpcgan-$scaling-n$n" "${size[@]}"
         --time="${TIME:-01:00:00}" --output="$OUT/slurm-%A_%a.out" ${SBATCH_EXTRA:-}
         --export=ALL,HPCGAN_ROOT="$HPCGAN_ROOT",SWEEP_SCALING="$scaling",SWEEP_N="$n",TASKS_PER_NODE="$tpn"
         "$jobs_dir/sweep_task.sbatch" "$@")
    if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "${cmd[@]}"; echo; continue; fi
    id="$("${cmd[@]}")"
    echo "sweep $scaling: N=$n: job array $id (${#algos[@]} tasks: ${algos[*]}), logs $OUT/slurm-${id%%;*}_*.out"
done
