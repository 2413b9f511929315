#!/usr/bin/env bash
#SBATCH --job-name=hpcgan-sweep-strong
#SBATCH --nodes=2
#SBATCH --time=02:00:00
#SBATCH --exclusive
#SBATCH --gpus-per-node=4
#SBATCH --signal=USR1@120
#SBATCH --requeue
# GPUs: set --gpus-per-node (or --gres=gpu:N) to your nodes' count; tasks per node follow the allocation.
# 120 s before the time limit every task gets SIGUSR1 (not B:, which would signal only this shell):
# the run checkpoints and stops. A preempted or requeued job keeps its id and resumes its runs.
# strong scaling sweep of ALGOS over RANKS (see jobs/sweep.sh); then: hpcgan report results/sweep_strong --out reports/sweep_strong
# sbatch jobs/sweep_strong.sh [flags]   |   DRY_RUN=1 bash jobs/sweep_strong.sh   (prints the srun lines)
set -euo pipefail
jobs_dir="${HPCGAN_ROOT:+$HPCGAN_ROOT/jobs}"
[[ -n "$jobs_dir" ]] || jobs_dir="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
[[ -f "$jobs_dir/sweep.sh" ]] || jobs_dir="$jobs_dir/jobs"
exec bash "$jobs_dir/sweep.sh" strong "$@"
