"""tools/gpu_check.sh parses, and without a CUDA device it runs nothing and says so with its own
exit status (77), which nobody can take for a pass."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "gpu_check.sh"


def test_gpu_check_parses():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: run tools/gpu_check.sh itself (make gpu-check)")
def test_without_cuda_nothing_is_run_and_the_exit_status_is_not_a_pass(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 77
    assert r.stdout == "gpu_check: no CUDA device: nothing run (exit 77; this is not a pass)\n"
    assert not out.exists()
