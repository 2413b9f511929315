#!/usr/bin/env bash
# Build Horovod 0.28.1 from its PyPI sdist for the installed torch + MPI, cache the wheel outside
# the repo, and install it into the venv. The cache key is (horovod, python, torch, MPI library), so
# a second run installs the cached wheel in seconds.
#
# Fixes applied to the sdist (Horovod 0.28.1 predates the toolchain here):
#   * CMakeLists.txt: C++14 -> C++17 (torch headers need 17).
#   * horovod/torch/CMakeLists.txt: the standard the installed torch needs (17 < 2.14 <= 20).
#   * CMAKE_POLICY_VERSION_MINIMUM=3.5 so CMake 4 accepts the old cmake_minimum_required calls.
#   * cmake/Modules/FindPytorch.cmake: Pytorch_CUDA forced false when torch is a CUDA build but
#     no CUDA runtime/compiler is usable here (otherwise it tries to build CUDA kernels).
# Usage: tools/build_horovod.sh [VENV]   (default .venv)
set -euo pipefail
HVD_VERSION=0.28.1
VENV=${1:-.venv}
PY="$VENV/bin/python"
CACHE_ROOT=${HPCGAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hpcgan}

key=$("$PY" - <<'PY'
import platform, re, torch
from mpi4py import MPI
lib = MPI.Get_library_version().strip().splitlines()[0]
print(re.sub(r"[^A-Za-z0-9.+-]+", "_", f"py{platform.python_version()}-torch{torch.__version__}-{lib}"))
PY
)
cache="$CACHE_ROOT/horovod-$HVD_VERSION/$key"
if "$PY" -c "import horovod, horovod.torch, sys; sys.exit(horovod.__version__ != '$HVD_VERSION')" 2>/dev/null; then
    echo "horovod $HVD_VERSION already installed in $VENV"
    exit 0
fi
wheel=$(ls "$cache"/horovod-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/hpcgan-horovod.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    "$PY" -m pip install -q packaging wheel
    "$PY" -m pip download -q --no-deps --no-binary :all: "horovod==$HVD_VERSION" -d "$work"
    tar -xzf "$work/horovod-$HVD_VERSION.tar.gz" -C "$work"
    src="$work/horovod-$HVD_VERSION"
    torch_std=$("$PY" -c "import torch; v=tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); print(20 if v >= (2, 14) else 17)")
    sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' "$src/CMakeLists.txt"
    sed -i "s/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD $torch_std)/" "$src/horovod/torch/CMakeLists.txt"
    grep -q "CMAKE_CXX_STANDARD 17" "$src/CMakeLists.txt"
    grep -q "CMAKE_CXX_STANDARD $torch_std" "$src/horovod/torch/CMakeLists.txt"
    if ! "$PY" -c "import torch, shutil, sys; sys.exit(not (torch.cuda.is_available() and shutil.which('nvcc')))"; then
        sed -i 's/^string(TOUPPER "${Pytorch_CUDA}" Pytorch_CUDA)$/&\nset(Pytorch_CUDA FALSE)  # hpcgan: no CUDA runtime here/' \
            "$src/cmake/Modules/FindPytorch.cmake"
        grep -q "set(Pytorch_CUDA FALSE)" "$src/cmake/Modules/FindPytorch.cmake"
        export HOROVOD_WITHOUT_GPU=1 HOROVOD_GPU_OPERATIONS= CUDA_VISIBLE_DEVICES=
    fi
    export CMAKE_POLICY_VERSION_MINIMUM=3.5
    export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1
    export HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITHOUT_GLOO=1
    export PATH="$(cd "$VENV/bin" && pwd):$PATH"   # mpicxx / mpiexec of the venv's MPI
    export MAKEFLAGS="-j${HOROVOD_BUILD_JOBS:-$(nproc)}"
    echo "building horovod $HVD_VERSION for $key (several minutes)"
    "$PY" -m pip wheel --no-deps --no-build-isolation -w "$work/dist" "$src"
    mkdir -p "$cache"
    cp "$work"/dist/horovod-*.whl "$cache"/
    wheel=$(ls "$cache"/horovod-*.whl | head -1)
fi
"$PY" -m pip install -q --no-deps --force-reinstall "$wheel"
"$PY" -c "import horovod.torch as hvd; print('horovod', __import__('horovod').__version__, 'mpi built:', hvd.mpi_built())"
