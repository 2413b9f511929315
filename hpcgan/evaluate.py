"""``hpcgan eval``: quality of a trained run, of the real data, or training the proxy classifier.

* ``hpcgan eval RUN.h5|RUN.h5.ckpt|rankR.pt [--metrics proxy,inception,mog] [--samples N]``: rebuilds
  the run's algorithm from the config stored in its checkpoint, loads the per-rank state and
  evaluates every model the algorithm exposes (``samplers()``), collectively. A run trained on M
  ranks is evaluated on M ranks (each loads its own ``rank{r}.pt``), or on one rank from one named
  ``rank{r}.pt``.
* ``hpcgan eval --real --data NAME``: the same metrics on real images (labels as the conditions).
* ``hpcgan eval --train-proxy --data NAME``: trains and saves the proxy classifier (rank 0).
"""
from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import load as load_checkpoint
from .config import RunConfig
from .data import build_dataset
from .errors import UsageError
from .log import get_logger
from .metrics import build_evaluator
from .world import World, rank_seed


def train_proxy_command(data: str, world: World, epochs: int, out: str | None) -> dict:
    from .metrics.proxy import default_path, save_proxy, train_proxy

    dataset = build_dataset(data)
    result = None
    if world.rank == 0:
        net, acc = train_proxy(dataset, epochs=epochs)
        path = Path(out) if out else default_path(dataset)
        digest = save_proxy(net, dataset, acc, path)
        result = {"proxy": str(path), "sha256": digest, "proxy_test_accuracy": acc}
    return world.comm.bcast(result, root=0)


def checkpoint_files(target: Path, world: World) -> Path:
    """This rank's checkpoint for ``target`` (a results file, its .ckpt folder, or one .pt)."""
    if target.suffix == ".pt":
        if world.size == 1:
            return target
        folder = target.parent
    else:
        folder = target if target.is_dir() else Path(str(target) + ".ckpt")
    ranks = sorted(folder.glob("rank*.pt"))
    if not ranks:
        raise UsageError(f"no checkpoint rank*.pt in {folder}; train with --ckpt-every N to evaluate a run")
    if len(ranks) != world.size:
        raise UsageError(f"{folder} holds checkpoints of {len(ranks)} ranks: evaluate on {len(ranks)} ranks, "
                         "or on one rank naming one rank{r}.pt")
    return folder / f"rank{world.rank}.pt"


def real_sampler(dataset, seed: int, world: World):
    """Draws this rank's real images with their labels (the labels act as conditions)."""
    loader = dataset.loader(500, world.rank, world.size, rank_seed(seed, 0, "real-eval"))

    def sample(n: int):
        x, y = next(loader)
        return x[:n], y[:n]
    return sample


def eval_command(args, world: World) -> dict:
    from .algorithms import ALGORITHMS, TrainContext
    from .comm import build_communicator

    metrics = args.metrics.split(",") if args.metrics else None
    if args.real:
        if not args.data:
            raise UsageError("--real needs --data NAME")
        dataset, step = build_dataset(args.data), -1
        samplers = {"": real_sampler(dataset, 0, world)}
    else:
        if not args.target:
            raise UsageError("name a run (RUN.h5, RUN.h5.ckpt or rank{r}.pt), or use --real / --train-proxy")
        path = checkpoint_files(Path(args.target), world)
        state = load_checkpoint(path)  # tensors and plain values only: never runs code from the file
        cfg = RunConfig.from_json(state["config_json"])
        dataset = build_dataset(args.data or cfg.data.data, labels=cfg.data.labels)
        algo = ALGORITHMS.get(cfg.algo.algo)(TrainContext(cfg, world, build_communicator(cfg.comm, world.comm), dataset))
        algo.load_state_dict(state["algorithm"])
        samplers, step = algo.samplers(), int(state["step"])
    evaluator = build_evaluator(dataset, metrics, args.inception_weights, args.proxy, world.device)
    if evaluator is None:
        raise UsageError("no metric is available for this dataset (see the log above)")
    result: dict = {"step": step, "samples": args.samples}
    for suffix, sampler in samplers.items():
        got = evaluator.evaluate(sampler, args.samples, world.comm)
        result.update({(f"{k}_{suffix}" if suffix else k): v for k, v in got.items()})
    return result


def report(result: dict, out: str | None) -> None:
    """Rank 0: print one metric per line (proxies flagged) and optionally write JSON."""
    for key, value in result.items():
        note = "   (proxy: not comparable with published numbers)" if key.startswith("proxy_") else ""
        print(f"{key:>28}: {value:.6g}{note}" if isinstance(value, float) else f"{key:>28}: {value}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        get_logger().info("metrics written to %s", out)
