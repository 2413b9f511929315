#!/usr/bin/env bash
# Which MPI `make MPI=system` builds mpi4py against: the compiler wrapper's command line (`$MPICC
# -show`, or Open MPI's `--showme`) and the library's own version string (MPI_Get_library_version,
# callable before MPI_Init, so no launcher is needed). The Makefile keeps this output in
# .venv/.mpi-identity and rebuilds mpi4py when it changes (another module loaded, a new version).
set -euo pipefail
mpicc="${MPICC:-mpicc}"
command -v "$mpicc" >/dev/null || { echo "mpi_identity: no MPI compiler wrapper '$mpicc' on PATH: load the MPI module (or set MPICC)" >&2; exit 1; }
echo "MPICC=$mpicc ($(command -v "$mpicc"))"
"$mpicc" -show 2>/dev/null || "$mpicc" --showme 2>/dev/null || echo "(no -show/--showme)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/v.c" <<'C'
#include <mpi.h>
#include <stdio.h>
int main(void) { char v[MPI_MAX_LIBRARY_VERSION_STRING]; int n; MPI_Get_library_version(v, &n); puts(v); return 0; }
C
"$mpicc" -o "$tmp/v" "$tmp/v.c"
"$tmp/v"
