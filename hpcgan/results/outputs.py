"""A run's outputs, all next to ``--out``: the results file ``RUN.h5``, its checkpoints
``RUN.h5.ckpt/`` and its final model ``RUN.h5.model/``. One run writes them, and only ``--force``
removes them: a new run (neither ``--force`` nor ``--resume``) that finds any of them is refused,
so files of an earlier run are never deleted or mixed with the new run's. Called under the run's
lock (:mod:`hpcgan.results.lock`), after the requeue decision and before anything is written.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..checkpoint import folder as checkpoint_folder
from ..errors import UsageError
from .model import model_dir


def outputs(out: str | Path) -> list[Path]:
    return [Path(out), checkpoint_folder(out), model_dir(out)]


def claim_outputs(out: str | Path, force: bool, resume: bool, comm) -> None:
    """Collective (rank 0 looks): refuse a new run whose outputs exist; with ``force``, remove the
    checkpoint and model folders (the recorder replaces ``RUN.h5`` itself)."""
    error = None
    if comm.rank == 0 and not resume:
        found = [p for p in outputs(out) if p.exists() or p.is_symlink()]
        if found and not force:
            error = f"{found[0]} exists; pass --force to replace it or --resume to continue it"
        folders = [p for p in found if p != Path(out)] if force else []  # RUN.h5: the recorder replaces it
        for p in folders:
            try:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            except OSError as e:
                error = f"--force cannot remove {p}: {e.strerror or e}"
                break
    error = comm.bcast(error, root=0)
    if error:
        raise UsageError(error).everywhere()
