"""`make MPI=system` against a fake site MPI and a fake .venv python that records pip's arguments:
mpi4py is built from source without pip's wheel cache, a second make installs nothing, and loading
another MPI (another version string or wrapper command line) rebuilds it."""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_MPICC = r"""#!/usr/bin/env bash
# -show: the wrapper's command line; -o OUT SRC: an "executable" printing the library version
if [[ "$1" == -show ]]; then echo "cc -I/opt/$FAKE_MPI/include -L/opt/$FAKE_MPI/lib -lmpi"; exit 0; fi
printf '#!/bin/sh\necho "%s Version: %s"\n' "$FAKE_MPI" "$FAKE_MPI_VERSION" > "$2"; chmod +x "$2"
"""
FAKE_PYTHON = """#!/usr/bin/env bash
echo "MPICC=${MPICC:-} $*" >> "$(dirname "$0")/../pip.log"
"""


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def checkout(tmp_path):
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "tools", tmp_path / "tools")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    executable(tmp_path / ".venv" / "bin" / "python", FAKE_PYTHON)
    executable(tmp_path / "fake-mpicc", FAKE_MPICC)
    return tmp_path


def make(checkout: Path, mpi: str, version: str) -> list[str]:
    """Run `make MPI=system install`; the pip lines it ran."""
    log = checkout / ".venv" / "pip.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "FAKE_MPI": mpi, "FAKE_MPI_VERSION": version}
    r = subprocess.run(["make", "MPI=system", f"MPICC={checkout / 'fake-mpicc'}", "install"], cwd=checkout,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return log.read_text().splitlines() if log.exists() else []


def test_mpi4py_is_rebuilt_exactly_when_the_loaded_mpi_changes(checkout):
    first = make(checkout, "openmpi", "4.1.5")
    [install] = [line for line in first if " install " in line and "-e" in line]
    assert "--no-cache-dir" in install and "--no-binary mpi4py" in install
    assert install.startswith(f"MPICC={checkout / 'fake-mpicc'} ")
    assert any("uninstall" in line and "mpi4py" in line and "mpich" in line for line in first)
    assert make(checkout, "openmpi", "4.1.5") == []  # the same MPI: nothing to do
    assert any(" install " in line for line in make(checkout, "openmpi", "5.0.3"))  # a new version
    assert any(" install " in line for line in make(checkout, "cray-mpich", "5.0.3"))  # another wrapper
    assert "cray-mpich Version: 5.0.3" in (checkout / ".venv" / ".mpi-identity").read_text()
