#!/usr/bin/env bash
# weak scaling sweep of ALGOS over RANKS as one Slurm job array per rank count (see jobs/sweep.sh); then:
#   hpcgan report $OUT --out reports/sweep_weak
# bash jobs/sweep_weak.sh [flags]   |   DRY_RUN=1 bash jobs/sweep_weak.sh   (prints the sbatch lines)
set -euo pipefail
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/sweep.sh" weak "$@"
