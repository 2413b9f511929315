#!/usr/bin/env bash
# Train one algorithm on every task of the allocation: jobs/train.sh ALGO [extra hpcgan train flags].
# Used by the per-algorithm Slurm scripts; NTASKS defaults to the allocation's task count.
#   DATA     h5:PATH (default h5:$HPCGAN_DATA/cifar10.h5, HPCGAN_DATA = $HPCGAN_ROOT/data: CIFAR-10 as
#            data_prep/prepare.py writes it), or a built-in set: digits, or mog8 / mog25 (the 2-D toy,
#            only when asked for)
#   MODEL    (dcgan32 for h5: data; resnet32 is the larger one; else the algorithm's default)
#   STEPS (2000), BATCH (64 per rank), OUT ($HPCGAN_RESULTS/<job id>/<algo>.h5)
#   CKPT_EVERY  checkpoint every N steps (default: from the time limit, about one checkpoint per
#            10 minutes of it spread over STEPS, at least one per run; 0 = none). The --signal
#            warning always checkpoints when checkpoints are on.
#   CUDA_AWARE_MPI (auto), PREFLIGHT (1: `hpcgan preflight` first; 0 skips it), REQUEUE (1)
# Steps: 1. preflight on the same tasks (one line per problem, stop there); 2. train; 3. a step that
# stopped at the time-limit warning (SIGUSR1: exit 138) requeues this job (`scontrol requeue`),
# which keeps its job id, so the next start continues the run from its checkpoints (without
# checkpoints, CKPT_EVERY=0, it starts again). A warning that comes between the two steps, when no
# step runs, is lost (Slurm signals the steps once): the job then ends at its limit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
algo="${1:?usage: $0 ALGO [hpcgan train flags]}"; shift
ntasks="${NTASKS:-${SLURM_NTASKS:-$TASKS_PER_NODE}}"
out="${OUT:-$HPCGAN_RESULTS/${SLURM_JOB_ID:-local}/${algo}.h5}"
steps="${STEPS:-2000}"
data="${DATA:-h5:${HPCGAN_DATA:-$HPCGAN_ROOT/data}/cifar10.h5}"
model=()
if [[ "$data" == h5:* ]]; then
    model=(--model "${MODEL:-dcgan32}")
    if [[ ! -f "${data#h5:}" && "${DRY_RUN:-0}" != 1 ]]; then
        echo "hpcgan: error: no dataset at ${data#h5:}: prepare CIFAR-10 there (python data_prep/prepare.py" \
             "cifar10 SRC --out ${data#h5:}), point DATA=h5:PATH at yours, or ask for the 2-D toy with DATA=mog8" >&2
        exit 2
    fi
elif [[ -n "${MODEL:-}" ]]; then
    model=(--model "$MODEL")
fi

# The time limit in minutes (squeue's %l: [days-]hours:minutes:seconds, minutes:seconds, UNLIMITED).
time_limit_min() {
    local limit days=0 h=0 m=0 parts
    limit="$(squeue -h -j "${SLURM_JOB_ID:-}" -o %l 2>/dev/null | head -1)" || return 0
    [[ "$limit" =~ ^[0-9-]+:[0-9:]+$ ]] || return 0
    [[ "$limit" == *-* ]] && { days="${limit%%-*}"; limit="${limit#*-}"; }
    IFS=: read -r -a parts <<< "$limit"
    case "${#parts[@]}" in 3) h="${parts[0]}"; m="${parts[1]}" ;; 2) m="${parts[0]}" ;; esac
    echo $(( 10#$days * 1440 + 10#$h * 60 + 10#$m ))
}
if [[ -z "${CKPT_EVERY:-}" ]]; then
    limit="$(time_limit_min)"
    checkpoints=$(( ${limit:-100} / 10 > 1 ? ${limit:-100} / 10 : 1 ))  # unknown limit: 10 per run
    CKPT_EVERY=$(( (steps + checkpoints - 1) / checkpoints ))
fi

[[ "${DRY_RUN:-0}" == 1 ]] || mkdir -p "$(dirname "$out")"
rc=0
if [[ "${PREFLIGHT:-1}" == 1 ]]; then
    hpcgan_srun "$ntasks" preflight --device "$DEVICE" --cuda-aware-mpi "${CUDA_AWARE_MPI:-auto}" || rc=$?
fi
aware=(); [[ -z "${CUDA_AWARE_MPI:-}" ]] || aware=(--cuda-aware-mpi "$CUDA_AWARE_MPI")  # not every algorithm takes it
(( rc )) || hpcgan_srun "$ntasks" train --algo "$algo" --data "$data" "${model[@]}" --steps "$steps" \
    --batch-size "${BATCH:-64}" --device "$DEVICE" "${aware[@]}" --ckpt-every "$CKPT_EVERY" --out "$out" "$@" || rc=$?
if (( rc == 128 + 10 )) && [[ -n "${SLURM_JOB_ID:-}" && "${REQUEUE:-1}" == 1 ]]; then
    echo "hpcgan: stopped at the time-limit warning: requeueing job $SLURM_JOB_ID to continue $out" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
