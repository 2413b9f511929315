#!/usr/bin/env bash
# Run hpcgan on this machine with P ranks over the embedded (or any) mpiexec.
#   jobs/mpirun_local.sh 2 train --algo sync --data mog8 --out results/local.h5
# Set MPIEXEC to use another launcher (default: .venv's, else mpiexec on PATH); extra flags in MPIEXEC_FLAGS.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
np="${1:?usage: $0 NPROCS hpcgan-command [args...]}"; shift
mpiexec="${MPIEXEC:-$here/.venv/bin/mpiexec}"
[[ -n "${MPIEXEC:-}" || -x "$mpiexec" ]] || mpiexec=mpiexec  # `make MPI=system`: the site's launcher
python="${PYTHON:-$here/.venv/bin/python}"
# shellcheck disable=SC2086
exec "$mpiexec" -n "$np" ${MPIEXEC_FLAGS:-} "$python" -m mpi4py -m hpcgan "$@"
