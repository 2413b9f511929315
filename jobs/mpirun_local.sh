#!/usr/bin/env bash
# Run hpcgan on this machine with P ranks over the embedded (or any) mpiexec.
#   jobs/mpirun_local.sh 2 train --algo sync --data mog8 --out results/local.h5
# Set MPIEXEC to use another launcher; extra launcher flags go in MPIEXEC_FLAGS.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
np="${1:?usage: $0 NPROCS hpcgan-command [args...]}"; shift
mpiexec="${MPIEXEC:-$here/.venv/bin/mpiexec}"
python="${PYTHON:-$here/.venv/bin/python}"
# shellcheck disable=SC2086
exec "$mpiexec" -n "$np" ${MPIEXEC_FLAGS:-} "$python" -m mpi4py -m hpcgan "$@"
