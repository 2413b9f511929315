#!/usr/bin/env bash
# Environment for hpcgan jobs: `source jobs/env.sh` (every script in jobs/ does). Variables, all
# optional; set them in the environment or in jobs/site.sh (sourced first when it exists):
#   HPCGAN_ROOT     repository root                       (default: the parent of jobs/)
#   HPCGAN_MODULES  modules to `module load`, space-separated, e.g. "cray-python cudatoolkit"
#   HPCGAN_VENV     virtual environment with hpcgan        (default: $HPCGAN_ROOT/.venv)
#   GPUS_PER_NODE   GPUs per node = MPI tasks per node      (default: $SLURM_GPUS_ON_NODE or 4)
#   CPUS_PER_TASK   cores per task (torch threads)          (default: cores per node / GPUS_PER_NODE)
#   GPU_BIND        srun GPU binding; empty = --gpus-per-task=1 (one visible GPU per task);
#                   e.g. "closest" on Frontier adds --gpu-bind=closest
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
GPUS_PER_NODE="${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-4}}"
_cores="${SLURM_CPUS_ON_NODE:-$(nproc)}"
CPUS_PER_TASK="${CPUS_PER_TASK:-$(( _cores / GPUS_PER_NODE > 0 ? _cores / GPUS_PER_NODE : 1 ))}"
export OMP_NUM_THREADS="$CPUS_PER_TASK" PYTHONUNBUFFERED=1
export HPCGAN_ROOT HPCGAN_PYTHON GPUS_PER_NODE CPUS_PER_TASK

# srun flags for N tasks: whole nodes of GPUS_PER_NODE tasks, one GPU and CPUS_PER_TASK cores each.
hpcgan_srun_flags() {
    local n="$1" tpn="$GPUS_PER_NODE"
    if (( n < tpn )); then tpn="$n"; elif (( n % tpn )); then
        echo "hpcgan: $n tasks is not a multiple of GPUS_PER_NODE=$GPUS_PER_NODE" >&2; return 2
    fi
    local flags=(--nodes=$(( n / tpn )) --ntasks="$n" --ntasks-per-node="$tpn" --cpus-per-task="$CPUS_PER_TASK"
                 --cpu-bind=cores)
    if [[ -n "${GPU_BIND:-}" ]]; then flags+=(--gpus-per-task=1 --gpu-bind="$GPU_BIND"); else flags+=(--gpus-per-task=1); fi
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
