"""One run per ``--out`` at a time: an exclusive lock, ``RUN.h5.lock``, held for the whole run.

:class:`RunLock` is taken (collectively; rank 0 does the file work) before anything may delete or
write an output (``--force``, the results file, checkpoints, the final model) and released when
the run ends, however it ends. A second run on the same ``--out`` meanwhile is refused with one
line naming the holder: host, pid and Slurm job id.

1. Taking it creates the file exclusively (``O_CREAT | O_EXCL``, atomic also on NFS v3+) and writes
   the holder as JSON, with a random token that only its owner's release matches.
2. A lock whose holder is gone is stale and taken over: a process on this host that no longer
   exists (``kill -9``, a node's local crash), or an earlier incarnation of this very Slurm job
   (a requeued job; Slurm runs one at a time). A holder on another host cannot be checked from
   here: the message says which file to remove if that job no longer runs.
3. Taking over removes the stale file only if it still holds what was read (another run may have
   taken it over meanwhile), then creates it exclusively again as in 1.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import uuid
from pathlib import Path

from ..errors import UsageError


def lock_path(out: str | Path) -> Path:
    return Path(str(out) + ".lock")


class RunLock:
    """``with RunLock(out, comm):`` the run; collective on enter and exit."""

    def __init__(self, out: str | Path, comm):
        self.out, self.path, self.comm, self.token = Path(out), lock_path(out), comm, ""

    def __enter__(self) -> "RunLock":
        error = None
        if self.comm.rank == 0:
            try:
                self.token = acquire(self.path)
            except UsageError as e:
                error = str(e)
            except OSError as e:
                error = f"cannot lock --out {self.out}: {e.strerror or e}"
        error = self.comm.bcast(error, root=0)
        if error:
            raise UsageError(error).everywhere()
        return self

    def __exit__(self, *exc) -> None:
        if self.token:
            release(self.path, self.token)
            self.token = ""


def holder_of_this_process() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
            "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "token": uuid.uuid4().hex}


def acquire(path: Path) -> str:
    """Create the lock ``path`` for this process (steps 1-3 above); its token, or a UsageError
    naming the holder."""
    me = holder_of_this_process()
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen = _read(path)
            if not seen and not path.exists():  # released meanwhile
                continue
            holder = _parse(seen)
            if holder is None or not stale(holder):
                raise UsageError(in_use(path, holder)) from None
            if _read(path) == seen:
                path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me) + "\n")
        return me["token"]
    raise UsageError(in_use(path, _parse(_read(path))))


def release(path: Path, token: str) -> None:
    """Remove the lock if it is still this owner's (never another run's)."""
    holder = _parse(_read(path))
    if holder is not None and holder.get("token") == token:
        path.unlink(missing_ok=True)


def stale(holder: dict) -> bool:
    """The holder is gone: a process of this host that no longer exists, or this Slurm job's own
    earlier incarnation."""
    job = os.environ.get("SLURM_JOB_ID", "")
    if job and holder.get("slurm_job_id") == job and holder.get("pid") != os.getpid():
        return True
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, another user's
        return False
    return False


def in_use(path: Path, holder: dict | None) -> str:
    out = str(path)[: -len(".lock")]
    if holder is None:
        return (f"--out {out} is locked by another run ({path} is empty or damaged); if no run is writing {out}, "
                f"remove {path}")
    job = f", Slurm job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return (f"--out {out} is in use by another run (host {holder.get('host')}, pid {holder.get('pid')}{job}, since "
            f"{holder.get('since')}); wait for it or choose another --out (if that run is gone, remove {path})")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _parse(raw: bytes) -> dict | None:
    try:
        holder = json.loads(raw)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None
