#!/usr/bin/env bash
# Environment for hpcgan jobs: `source jobs/env.sh` (every script in jobs/ does). Variables, all
# optional; set them in the environment or in jobs/site.sh (sourced first when it exists):
#   HPCGAN_ROOT     repository root                       (default: the parent of jobs/)
#   HPCGAN_MODULES  modules to `module load`, space-separated, e.g. "cray-python cudatoolkit"
#   HPCGAN_VENV     virtual environment with hpcgan        (default: $HPCGAN_ROOT/.venv)
#   GPUS_PER_NODE   GPUs per node = MPI tasks per node      (default: what the allocation has:
#                   SLURM_GPUS_ON_NODE, else SLURM_GPUS_PER_NODE, else the entries of
#                   CUDA_VISIBLE_DEVICES; none of them = an error: set it explicitly)
#   CPUS_PER_TASK   cores per task (torch threads)          (default: cores per node / GPUS_PER_NODE)
#   GPU_BIND        how tasks get their GPU; empty (default) = every task sees all GPUs of its node
#                   (--gpus-per-node) and hpcgan picks GPU local rank mod GPUs, which NCCL needs for
#                   peer-to-peer transfers; "closest" or "map_gpu:..." adds --gpu-bind; "per_task"
#                   = --gpus-per-task=1 (one visible GPU per task: isolation, but NCCL loses its peers)
#   SRUN_MPI        srun's PMI plugin, e.g. pmix or pmi2 (adds --mpi=...; `srun --mpi=list`): the one
#                   the site MPI that mpi4py is built against expects   (default: the site default)
#   SRUN_EXTRA      extra srun flags, e.g. "--network=single_node_vni"
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
if [[ -n "${GPUS_PER_NODE:-}" ]]; then
    _alloc="$(hpcgan_allocated_gpus)"
    [[ -n "${HPCGAN_GPUS_SAID:-}" ]] || echo "hpcgan: GPUS_PER_NODE=$GPUS_PER_NODE as set explicitly" \
                                            "(the allocation: ${_alloc:-no GPU count found})" >&2
else
    GPUS_PER_NODE="$(hpcgan_allocated_gpus)"
    if [[ -z "$GPUS_PER_NODE" || "$GPUS_PER_NODE" == 0 ]]; then
        echo "hpcgan: cannot tell how many GPUs each node has (no SLURM_GPUS_ON_NODE, SLURM_GPUS_PER_NODE or" \
             "CUDA_VISIBLE_DEVICES): request GPUs (sbatch --gpus-per-node=N) or set GPUS_PER_NODE" >&2
        return 2 2>/dev/null || exit 2
    fi
fi
export HPCGAN_GPUS_SAID=1
_cores="${SLURM_CPUS_ON_NODE:-$(nproc)}"
CPUS_PER_TASK="${CPUS_PER_TASK:-$(( _cores / GPUS_PER_NODE > 0 ? _cores / GPUS_PER_NODE : 1 ))}"
export OMP_NUM_THREADS="$CPUS_PER_TASK" PYTHONUNBUFFERED=1
export HPCGAN_ROOT HPCGAN_PYTHON GPUS_PER_NODE CPUS_PER_TASK

# srun flags for N tasks: whole nodes of GPUS_PER_NODE tasks, one GPU and CPUS_PER_TASK cores each
# (a run of fewer tasks than GPUS_PER_NODE gets one node and as many GPUs as tasks).
hpcgan_srun_flags() {
    local n="$1" tpn="$GPUS_PER_NODE"
    if (( n < tpn )); then tpn="$n"; elif (( n % tpn )); then
        echo "hpcgan: $n tasks is not a multiple of GPUS_PER_NODE=$GPUS_PER_NODE" >&2; return 2
    fi
    local flags=(--nodes=$(( n / tpn )) --ntasks="$n" --ntasks-per-node="$tpn" --cpus-per-task="$CPUS_PER_TASK"
                 --cpu-bind=cores)
    case "${GPU_BIND:-}" in
        "") flags+=(--gpus-per-node="$tpn") ;;
        per_task) flags+=(--gpus-per-task=1) ;;
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
