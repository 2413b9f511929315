"""Per-rank checkpoint files, ``<out>.ckpt/rank{r}.pt``: writing them safely, reading them safely.

A checkpoint is a dict of tensors and plain Python values (numbers, strings, lists, tuples, dicts)
only, so it is read with ``torch.load(weights_only=True)``: a file someone hands you cannot run
code. Anything else in a file, or a damaged file, is refused with a UsageError naming the file.
numpy's global RNG state, a tuple holding an ndarray, is stored as a tensor (:func:`numpy_rng_state`).

Writing is two-phase over ``comm`` (the control channel of the ranks that checkpoint together; one rank alone for ranks
that train on their own clocks): each rank writes ``rank{r}.pt.tmp``, the ranks agree that every
write succeeded, and only then each moves its last checkpoint to ``rank{r}.pt.prev`` and renames
the new one into place. A failed write on any rank (disk full, permissions) removes every
temporary file and raises a WriteError naming the file on every rank; the previous checkpoints
stay. A job killed between two ranks' renames leaves ranks one generation apart: ``--resume``
(:func:`load_resumable`) continues from the newest step every rank has, kept as ``.pt`` or ``.prev``.

Every checkpoint carries its run's identity (:func:`new_identity`: a random run id, the digest of
the configuration it started with, the seed), as does the results file; a resume refuses
checkpoints of different runs, and the recorder refuses a results file of another run.
"""
from __future__ import annotations

import json
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UsageError, WriteError, agree, collectively, write_failure

#: Keys every checkpoint holds (besides the algorithm's, loader's and RNG states).
FORMAT = 1
REQUIRED = ("format", "step", "elapsed", "world_size", "algo", "config_json", "algorithm", "loader")


def folder(out: str | Path) -> Path:
    return Path(str(out) + ".ckpt")


def checkpoint_path(out: str | Path, rank: int) -> Path:
    return folder(out) / f"rank{rank}.pt"


def numpy_rng_state() -> dict[str, Any]:
    """numpy's global RNG state as a tensor and plain values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def set_numpy_rng_state(state: dict[str, Any]) -> None:
    np.random.set_state((state["kind"], state["keys"].numpy().astype(np.uint32), state["pos"],
                         state["has_gauss"], state["cached_gaussian"]))


def save(path: Path, state: dict[str, Any], comm) -> None:
    """Collective over ``comm``: write every rank's ``state`` to its ``path``, or none of them."""
    tmp = path.with_name(path.name + ".tmp")
    error = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": FORMAT, **state}, tmp)
    except Exception as e:  # torch reports a full disk as "basic_ios::clear" or "unexpected pos"
        error = WriteError(f"cannot write checkpoint {path}: {write_failure(tmp, e)}; the previous "
                           "checkpoint is kept")
    try:
        agree(comm, error)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    if path.exists():
        os.replace(path, previous(path))
    os.replace(tmp, path)


def previous(path: Path) -> Path:
    """Where the generation before ``path`` is kept."""
    return path.with_name(path.name + ".prev")


#: The keys of a run's identity, in checkpoints and in the results file's root attributes.
IDENTITY = ("seed", "config_digest", "run_id")


def new_identity(cfg, comm) -> dict[str, Any]:
    """Collective: the identity of a run starting now (one random id, drawn on rank 0)."""
    return {"seed": int(cfg.run.seed), "config_digest": cfg.digest(),
            "run_id": comm.bcast(uuid.uuid4().hex if comm.rank == 0 else None, root=0)}


def identity_of(state: dict[str, Any]) -> dict[str, Any]:
    """The identity a checkpoint carries ({} for checkpoints written before identities)."""
    return {k: state[k] for k in IDENTITY} if all(k in state for k in IDENTITY) else {}


def read_plain(path: Path, what: str) -> Any:
    """A file of tensors and plain values written by ``torch.save`` (a checkpoint, a final model),
    read with ``weights_only=True``; a UsageError naming the file and ``what`` it should be if it
    holds anything else (loading it could run code) or is damaged."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UsageError(f"refusing {what} {path}: it holds objects other than tensors and plain "
                         "values (a crafted file, or an older hpcgan's), and loading them could run code") from None
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot read {what} {path}: damaged or not a {what} ({first})") from None


def load(path: Path) -> dict[str, Any]:
    """The checkpoint in ``path``; a UsageError naming the file if it is missing, damaged or holds
    anything but tensors and plain values."""
    if not path.is_file():
        raise UsageError(f"no checkpoint {path} (train with --ckpt-every N to write one)")
    state = read_plain(path, "checkpoint")
    missing = [k for k in REQUIRED if k not in state] if isinstance(state, dict) else list(REQUIRED)
    if missing or state["format"] != FORMAT:
        raise UsageError(f"cannot read checkpoint {path}: not an hpcgan checkpoint of format {FORMAT} "
                         f"(missing {', '.join(missing) or 'format'})")
    return state


def check_resumable(state: dict[str, Any], path: Path, config_json: str, world_size: int,
                    resumable: set[str]) -> None:
    """UsageError unless ``state`` (from ``path``) can continue a run of this configuration on
    ``world_size`` ranks: same number of ranks, same algorithm, same settings except ``resumable``."""
    if state["world_size"] != world_size:
        raise UsageError(f"cannot resume: {path} was written by a job of {state['world_size']} rank(s), this "
                         f"job has {world_size}; resume on {state['world_size']} ranks")
    saved, now = json.loads(state["config_json"]), json.loads(config_json)
    if state["algo"] != now["algo"]["algo"]:
        raise UsageError(f"cannot resume: {path} is a checkpoint of --algo {state['algo']}, not {now['algo']['algo']}")
    diff = sorted(f"{sec}.{k}" for sec in now for k in now[sec]
                  if k not in resumable and now[sec][k] != saved.get(sec, {}).get(k))
    if diff:
        raise UsageError(f"cannot resume {path}: settings differ from the checkpoint: {', '.join(diff)}")


def load_resumable(path: Path, config_json: str, comm, peers, out: str | Path,
                   resumable: set[str]) -> dict[str, Any]:
    """Collective over ``comm`` (all ranks): the checkpoint this rank continues from. Each rank
    reads its generations (``path`` and :func:`previous`), each checked by :func:`check_resumable`,
    and takes the newest step that all its ``peers`` (the ranks it checkpoints with) have
    (:func:`newest_common_step`). Every rank's choice must be of one run (:func:`identity_of`)."""
    def load_mine() -> list[dict[str, Any]]:
        found = [p for p in (path, previous(path)) if p.is_file()]
        states = [load(p) for p in found] or [load(path)]  # none: load() names the missing file
        for state, p in zip(states, found):
            check_resumable(state, p, config_json, comm.size, resumable)
        return states
    states = collectively(comm, load_mine)
    step = newest_common_step(peers.allgather([int(s["step"]) for s in states]), out)
    state = next(s for s in states if int(s["step"]) == step)
    check_one_run(comm.allgather(identity_of(state).get("run_id")), out)
    return state


def newest_common_step(steps: list[list[int]], out: str | Path) -> int:
    """The newest step of which every rank of a group that checkpoints together has a checkpoint
    (``steps``: per rank, the steps of its generations); UsageError if there is none."""
    common = set.intersection(*(set(s) for s in steps))
    if not common:
        listed = ", ".join(f"rank {r}: {sorted(s, reverse=True)}" for r, s in enumerate(steps))
        raise UsageError(f"cannot resume: the checkpoints in {folder(out)} have no step in common ({listed}); "
                         "start the run again with --force")
    return max(common)


def check_one_run(run_ids: list[str | None], out: str | Path) -> None:
    """UsageError unless every rank's checkpoint is of one run (``run_ids`` per rank)."""
    if len(set(run_ids)) > 1:
        differing = [r for r, i in enumerate(run_ids) if i != run_ids[0]]
        raise UsageError(f"cannot resume: the checkpoints in {folder(out)} are of different runs (ranks {differing} "
                         "differ from rank 0's run_id); start the run again with --force")
