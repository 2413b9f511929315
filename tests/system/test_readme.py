"""Every command the README shows runs, scaled down (fewer steps, one seed, outputs in a temporary
folder), in the README's order, so the summary, report and grid read what the demo and the `train`
example wrote; a command this test does not know how to run fails it. Its Python snippets run too
(DDP in a one-process gloo group; Horovod where it is installed). The README stays short."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import MPIEXEC

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: Flags scaled down wherever the README passes them.
SCALED = {"--steps": "20", "--eval-every": "10"}
#: The demo, scaled down: one seed, a few steps (Makefile variables).
DEMO = ["SEEDS=0", "DEMO_STEPS=20", "DEMO_EVAL=10", "PCWGAN_STEPS=10"]


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks in ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def commands() -> list[str]:
    """Every command line of the README's ``sh`` blocks (continuations joined, comments dropped)."""
    out = []
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            if shlex.split(line, comments=True):
                out.append(line)
    return out


def runnable(line: str, tmp: Path) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) that run README ``line`` here, scaled down; fails for a command
    this test cannot run."""
    words = shlex.split(line, comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    results = str(tmp / "results")
    words = [w.replace("results/", results + "/", 1) if w.startswith("results/") else w for w in words]
    for i, w in enumerate(words[:-1]):
        if w in SCALED:
            words[i + 1] = SCALED[w]
    head = words[:1]
    if words in (["make", "demo"], ["make", "test"], ["make", "MPI=system"]):
        stamps = [a for s in sorted((ROOT / ".venv").glob(".installed-*")) for a in ("-o", str(s))]
        if words[1] == "demo":  # the real thing, scaled down
            return ["make", "-C", str(ROOT), *stamps, "demo", f"DEMO={results}/demo", *DEMO], env
        return ["make", "-n", "-C", str(ROOT), *words[1:]], env  # what it would run (it would run this test)
    hpcgan_at = next((i for i in range(len(words) - 3) if words[i:i + 4] == ["python", "-m", "mpi4py", "-m"]), None)
    if head in (["mpiexec"], ["srun"]) and hpcgan_at is not None and words[hpcgan_at + 4] == "hpcgan":
        n = words[words.index("-n") + 1] if "-n" in words[:hpcgan_at] else "2"
        return [MPIEXEC, "-n", n, sys.executable, "-m", "mpi4py", "-m", "hpcgan", *words[hpcgan_at + 5:]], env
    if head == ["hpcgan"]:
        return [sys.executable, "-m", "hpcgan", *words[1:]], env
    if head == ["bash"] and words[1].startswith("jobs/") and env.get("DRY_RUN") == "1":
        return ["bash", str(ROOT / words[1]), *words[2:]], env
    pytest.fail(f"the README shows a command this test cannot run: {line}")


def test_the_readme_is_short_and_every_command_in_it_runs(tmp_path):
    assert len(README.read_text().splitlines()) <= 150, "the README onboards; the reference lives in docs/"
    shown = commands()
    assert any(c.startswith("make demo") for c in shown) and any("hpcgan train" in c for c in shown)
    for line in shown:
        argv, env = runnable(line, tmp_path)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=ROOT,
                           env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
        assert r.returncode == 0, f"README command failed: {line}\n{shlex.join(argv)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    demo = tmp_path / "results" / "demo"
    assert "quality over seeds:" in (demo / "summary.txt").read_text()
    report = (demo / "report" / "report.md").read_text()
    assert "## Time to quality at scale" in report and "dposg · ring · 4 ranks ⚠" in report
    assert (tmp_path / "results" / "first.png").stat().st_size > 10_000


def test_the_ddp_snippet_trains_a_step(tmp_path):
    ddp = next(b for b in blocks("python") if "DistributedDataParallel" in b)
    step = ("x = torch.randn(8, 512)\nmodel(x).square().mean().backward()\n"
            "assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())\n"
            "dist.destroy_process_group()\n")  # as a script ends (once, without it, gloo aborted at exit)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(29500 + os.getpid() % 1000),
           "RANK": "0", "WORLD_SIZE": "1"}
    r = subprocess.run([sys.executable, "-c", ddp + step], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr


def test_the_horovod_snippet_builds_its_optimizer():
    pytest.importorskip("horovod.torch", reason="Horovod is not installed (make horovod)")
    code = next(b for b in blocks("python") if "horovod" in b)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
