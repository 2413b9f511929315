#!/usr/bin/env bash
# strong scaling sweep of ALGOS over RANKS as one Slurm job array per rank count (see jobs/sweep.sh); then:
#   hpcgan report $OUT --out reports/sweep_strong
# bash jobs/sweep_strong.sh [flags]   |   DRY_RUN=1 bash jobs/sweep_strong.sh   (prints the sbatch lines)
set -euo pipefail
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/sweep.sh" strong "$@"
