#!/usr/bin/env bash
# Environment for hpcgan jobs: `source jobs/env.sh` (every script in jobs/ does). Variables, all
# optional; set them in the environment or in jobs/site.sh (sourced first when it exists):
#   HPCGAN_ROOT     repository root                       (default: the parent of jobs/)
#   HPCGAN_MODULES  modules to `module load`, space-separated, e.g. "cray-python cudatoolkit"
#   HPCGAN_VENV     virtual environment with hpcgan        (default: $HPCGAN_ROOT/.venv)
#   DEVICE          cuda (default: every rank needs a GPU, else the run refuses to start), cpu (no GPU
#                   flags; tasks per node = TASKS_PER_NODE), or auto (a GPU when there is one)
#   GPUS_PER_NODE   GPUs per node = MPI tasks per node      (default: what the allocation has:
#                   SLURM_GPUS_ON_NODE, else SLURM_GPUS_PER_NODE, else the entries of
#                   CUDA_VISIBLE_DEVICES; none of them = an error: set it explicitly. DRY_RUN=1 shows
#                   the calling script's #SBATCH --gpus-per-node instead)
#   TASKS_PER_NODE  DEVICE=cpu: MPI tasks per node          (default: the allocation's tasks per node,
#                   else the node's cores)
#   CPUS_PER_TASK   cores per task (torch threads)          (default: cores per node / tasks per node)
#   GPU_BIND        how tasks get their GPU; empty (default) = every task sees all GPUs of its node
#                   (--gpus-per-node) and hpcgan picks GPU local rank mod GPUs, which NCCL needs for
#                   peer-to-peer transfers; "closest" or "map_gpu:..." adds --gpu-bind; "per_task"
#                   = --gpus-per-task=1 (one visible GPU per task: isolation, but NCCL loses its peers)
#   SRUN_MPI        srun's PMI plugin, e.g. pmix or pmi2 (adds --mpi=...; `srun --mpi=list`): the one
#                   the site MPI that mpi4py is built against expects   (default: the site default;
#                   the embedded MPICH of `make` needs pmi2)
#   SRUN_EXTRA      extra srun flags, e.g. "--network=single_node_vni"
#   HPCGAN_RESULTS  where jobs write results   (default: $SCRATCH/hpcgan/results when SCRATCH is set,
#                   else $HPCGAN_ROOT/results)
#   DRY_RUN=1       print the exact srun lines instead of running them
# Rank -> GPU: world.py picks GPU (local rank mod visible GPUs); `hpcgan info` prints the map.
HPCGAN_ROOT="${HPCGAN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
[[ -f "$HPCGAN_ROOT/jobs/site.sh" ]] && source "$HPCGAN_ROOT/jobs/site.sh"
if [[ -n "${HPCGAN_MODULES:-}" && "${DRY_RUN:-0}" != 1 ]]; then
    # shellcheck disable=SC2086
    module load $HPCGAN_MODULES
fi
HPCGAN_VENV="${HPCGAN_VENV:-$HPCGAN_ROOT/.venv}"
HPCGAN_PYTHON="${HPCGAN_PYTHON:-$HPCGAN_VENV/bin/python}"
# GPUs of this node in the allocation: Slurm's count, else the typed count ("a100:4" -> 4), else the
# devices CUDA_VISIBLE_DEVICES lists; nothing if none of them is set.
hpcgan_allocated_gpus() {
    if [[ -n "${SLURM_GPUS_ON_NODE:-}" ]]; then echo "$SLURM_GPUS_ON_NODE"
    elif [[ -n "${SLURM_GPUS_PER_NODE:-}" ]]; then echo "${SLURM_GPUS_PER_NODE##*:}"
    elif [[ -n "${CUDA_VISIBLE_DEVICES:-}" && "$CUDA_VISIBLE_DEVICES" != NoDevFiles ]]; then
        local ids; IFS=, read -r -a ids <<< "$CUDA_VISIBLE_DEVICES"; echo "${#ids[@]}"
    fi
}
DEVICE="${DEVICE:-cuda}"
case "$DEVICE" in cuda|cpu|auto) ;; *) echo "hpcgan: error: DEVICE must be cuda, cpu or auto, not '$DEVICE'" >&2
                                      return 2 2>/dev/null || exit 2 ;; esac
if [[ "$DEVICE" == cpu ]]; then
    GPUS_PER_NODE=0
    _tpn="${SLURM_NTASKS_PER_NODE:-}"
    [[ -n "$_tpn" || -z "${SLURM_NTASKS:-}" ]] || _tpn=$(( SLURM_NTASKS / ${SLURM_NNODES:-1} ))
    TASKS_PER_NODE="${TASKS_PER_NODE:-${_tpn:-${SLURM_CPUS_ON_NODE:-$(nproc)}}}"
elif [[ -n "${GPUS_PER_NODE:-}" ]]; then
    _alloc="$(hpcgan_allocated_gpus)"
    [[ -n "${HPCGAN_GPUS_SAID:-}" ]] || echo "hpcgan: GPUS_PER_NODE=$GPUS_PER_NODE as set explicitly" \
                                            "(the allocation: ${_alloc:-no GPU count found})" >&2
else
    GPUS_PER_NODE="$(hpcgan_allocated_gpus)"
    if [[ -z "$GPUS_PER_NODE" || "$GPUS_PER_NODE" == 0 ]] && [[ "${DRY_RUN:-0}" == 1 ]]; then
        # a dry run on a login or CPU node: show what the batch header asks for
        GPUS_PER_NODE="$(sed -nE 's/^#SBATCH --gpus-per-node=([0-9]+).*/\1/p' "$0" 2>/dev/null | head -1)"
        GPUS_PER_NODE="${GPUS_PER_NODE:-4}"
        echo "hpcgan: dry run without a GPU allocation: showing GPUS_PER_NODE=$GPUS_PER_NODE" >&2
    elif [[ -z "$GPUS_PER_NODE" || "$GPUS_PER_NODE" == 0 ]]; then
        echo "hpcgan: cannot tell how many GPUs each node has (no SLURM_GPUS_ON_NODE, SLURM_GPUS_PER_NODE or" \
             "CUDA_VISIBLE_DEVICES): request GPUs (sbatch --gpus-per-node=N), set GPUS_PER_NODE, or DEVICE=cpu" >&2
        return 2 2>/dev/null || exit 2
    fi
fi
[[ "$DEVICE" == cpu ]] || TASKS_PER_NODE="$GPUS_PER_NODE"
export HPCGAN_GPUS_SAID=1
_cores="${SLURM_CPUS_ON_NODE:-$(nproc)}"
CPUS_PER_TASK="${CPUS_PER_TASK:-$(( _cores / TASKS_PER_NODE > 0 ? _cores / TASKS_PER_NODE : 1 ))}"
export OMP_NUM_THREADS="$CPUS_PER_TASK" PYTHONUNBUFFERED=1
HPCGAN_RESULTS="${HPCGAN_RESULTS:-${SCRATCH:+$SCRATCH/hpcgan/results}}"
HPCGAN_RESULTS="${HPCGAN_RESULTS:-$HPCGAN_ROOT/results}"
export HPCGAN_ROOT HPCGAN_PYTHON HPCGAN_RESULTS DEVICE GPUS_PER_NODE TASKS_PER_NODE CPUS_PER_TASK

# srun flags for N tasks: whole nodes of TASKS_PER_NODE tasks, one GPU (unless DEVICE=cpu) and
# CPUS_PER_TASK cores each (a run of fewer tasks than that gets one node and as many GPUs as tasks).
hpcgan_srun_flags() {
    local n="$1" tpn="$TASKS_PER_NODE"
    local what; [[ "$DEVICE" == cpu ]] && what="TASKS_PER_NODE=$TASKS_PER_NODE" || what="GPUS_PER_NODE=$GPUS_PER_NODE"
    if (( n < tpn )); then tpn="$n"; elif (( n % tpn )); then
        echo "hpcgan: $n tasks is not a multiple of $what" >&2; return 2
    fi
    local flags=(--nodes=$(( n / tpn )) --ntasks="$n" --ntasks-per-node="$tpn" --cpus-per-task="$CPUS_PER_TASK"
                 --cpu-bind=cores --kill-on-bad-exit=1)  # a task that dies (MPI_Init failed) ends the step
    case "$DEVICE:${GPU_BIND:-}" in
        cpu:*) ;;
        *:) flags+=(--gpus-per-node="$tpn") ;;
        *:per_task) flags+=(--gpus-per-task=1) ;;
        *) flags+=(--gpus-per-node="$tpn" --gpu-bind="$GPU_BIND") ;;
    esac
    [[ -z "${SRUN_MPI:-}" ]] || flags+=(--mpi="$SRUN_MPI")
    # shellcheck disable=SC2206
    flags+=(${SRUN_EXTRA:-})
    echo "${flags[@]}"
}

# hpcgan_srun N hpcgan-args...: run (or with DRY_RUN=1 print) srun ... python -m mpi4py -m hpcgan ARGS
hpcgan_srun() {
    local n="$1"; shift
    local flags; flags="$(hpcgan_srun_flags "$n")" || return $?
    # shellcheck disable=SC2206
    local cmd=(srun $flags "$HPCGAN_PYTHON" -m mpi4py -m hpcgan "$@")
    if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "${cmd[@]}"; echo; else "${cmd[@]}"; fi
}
