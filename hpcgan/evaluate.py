"""``hpcgan eval``: quality of trained runs, of the real data, or training the proxy classifier.

* ``hpcgan eval RUN.h5 [RUN2.h5 ...] [--metrics proxy,inception,mog] [--samples N] [--is-splits S]``:
  reads each run's final model (``RUN.h5.model/``, written at the end of every run,
  :mod:`hpcgan.results.model`) and evaluates every model in it (the run's own, plus e.g. DPOSG's
  rank 0 model), collectively, on any number of ranks; conditional and per-label models draw their
  labels interleaved in the data's proportions, as during training (:mod:`hpcgan.metrics.sampling`).
  The metrics go into the run's file as
  ``/final_eval`` with the sample count, IS splits and the SHA-256 of the weights evaluated; summary
  and report prefer them to the smaller evaluations during training.
* ``hpcgan eval RUN.h5.ckpt|rank{r}.pt``: a checkpoint (an intermediate step) instead, on the rank
  count it was trained on (each rank loads its own ``rank{r}.pt``) or on one rank from one named
  ``rank{r}.pt``; printed (and ``--out`` JSON) only.
* ``hpcgan eval --real --data NAME``: the same metrics on real images (labels as the conditions).
* ``hpcgan eval --train-proxy --data NAME``: trains and saves the proxy classifier (rank 0).
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch

from .checkpoint import load as load_checkpoint
from .config import RunConfig
from .data import build_dataset
from .errors import UsageError
from .log import get_logger
from .metrics import build_evaluator
from .metrics.sampling import label_proportions
from .results.model import FinalModel, files_digest, merge, read_final_model, results_of
from .results.reader import unreadable
from .results.recorder import utc_now
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


def is_checkpoint(target: Path) -> bool:
    return target.suffix in (".pt", ".ckpt")


def checkpoint_files(target: Path, world: World) -> Path:
    """This rank's checkpoint for ``target`` (a .ckpt folder or one rank{r}.pt)."""
    if target.suffix == ".pt":
        if world.size == 1:
            return target
        folder = target.parent
    else:
        folder = target
    ranks = sorted(folder.glob("rank*.pt"))
    if not ranks:
        raise UsageError(f"no checkpoint rank*.pt in {folder}; evaluate the run's final model instead: "
                         f"hpcgan eval {results_of(folder)}")
    if len(ranks) != world.size:
        raise UsageError(f"{folder} holds checkpoints of {len(ranks)} ranks: evaluate on {len(ranks)} ranks, "
                         "or on one rank naming one rank{r}.pt")
    return folder / f"rank{world.rank}.pt"


def model_from_checkpoint(target: Path, world: World, data: str | None) -> FinalModel:
    """Collective: the models of a checkpointed run, rebuilt through its algorithm on the ranks it ran on."""
    from .algorithms import ALGORITHMS, TrainContext
    from .comm import build_communicator

    path = checkpoint_files(target, world)
    state = load_checkpoint(path)
    cfg = RunConfig.from_json(state["config_json"])
    dataset = build_dataset(data or cfg.data.data, labels=cfg.data.labels)
    algo = ALGORITHMS.get(cfg.algo.algo)(TrainContext(cfg, world, build_communicator(cfg.comm, world.comm), dataset))
    algo.load_state_dict(state["algorithm"])
    parts = world.comm.allgather(algo.final_models())
    digest = files_digest(sorted(set(world.comm.allgather(path))))
    return FinalModel(cfg, int(state["step"]), merge(parts), digest, str(path.parent))


def real_sampler(dataset, seed: int, world: World):
    """Draws this rank's real images with their labels (the labels act as conditions)."""
    loader = dataset.loader(500, world.rank, world.size, rank_seed(seed, 0, "real-eval"))

    def sample(n: int):
        x, y = next(loader)
        return x[:n], y[:n]
    return sample


def eval_command(args, world: World) -> list[dict]:
    """One result per target (or one for ``--real``); the final models' go into their results files."""
    if args.samples < 2 or not 1 <= args.is_splits <= args.samples:
        raise UsageError(f"--samples must be >= 2 and --is-splits in 1..samples; got {args.samples}, {args.is_splits}")
    if args.real:
        if not args.data:
            raise UsageError("--real needs --data NAME")
        dataset = build_dataset(args.data)
        evaluator = _evaluator(args, dataset, args.data, world)
        return [{"data": args.data, "step": -1, "samples": args.samples, "is_splits": evaluator.is_splits,
                 **evaluator.evaluate(real_sampler(dataset, 0, world), args.samples, world.comm)}]
    if not args.targets:
        raise UsageError("name a run (RUN.h5, RUN.h5.model, RUN.h5.ckpt or rank{r}.pt), or use --real / --train-proxy")
    if args.out and len(args.targets) > 1:
        raise UsageError("--out takes one run; with several, each run's results go into its own file")
    return [evaluate_run(Path(t), args, world) for t in args.targets]


def evaluate_run(target: Path, args, world: World) -> dict:
    checkpoint = is_checkpoint(target)
    model = model_from_checkpoint(target, world, args.data) if checkpoint else read_final_model(target)
    data = args.data or model.cfg.data.data
    dataset = build_dataset(data, labels=model.cfg.data.labels)
    results = None if checkpoint else results_of(target)
    problem = _check_results_file(results, model) if world.rank == 0 and results else None
    problem = world.comm.bcast(problem, root=0)
    if problem:
        raise UsageError(problem)
    evaluator = _evaluator(args, dataset, data, world)
    get_logger().info("evaluating %s (step %d, %d samples per model)", model.source, model.step, args.samples)
    metrics: dict[str, float] = {}
    for suffix in model.models:
        sampler = model.sampler(suffix, dataset.spec, world.rank, proportions=label_proportions(dataset),
                                device=world.device)
        got = evaluator.evaluate(sampler, args.samples, world.comm)
        metrics.update({(f"{k}_{suffix}" if suffix else k): v for k, v in got.items()})
    result = {"run": str(target), "step": model.step, "samples": args.samples, "is_splits": evaluator.is_splits,
              "weights_sha256": model.digest, **metrics}
    if results is not None and world.rank == 0:
        write_final_eval(results, model, metrics, args.samples, evaluator, world.size)
        result["written_to"] = f"{results}:/final_eval"
    return result


def _evaluator(args, dataset, data: str, world: World):
    metrics = args.metrics.split(",") if args.metrics else None
    evaluator = build_evaluator(dataset, metrics, args.inception_weights, args.proxy, world.device, data=data,
                                is_splits=args.is_splits)
    if evaluator is None:
        raise UsageError("no metric is available for this dataset (see the log above)")
    return evaluator


def _check_results_file(results: Path, model: FinalModel) -> str | None:
    """Why the final model may not be recorded in ``results`` (None: it may; a missing file is
    only logged)."""
    if not results.is_file():
        get_logger().info("%s not found: the metrics are printed only", results)
        return None
    why = unreadable(results)  # checked against the schema before anything is read
    if why:
        return f"{results}: {why}"
    with h5py.File(results, "r") as f:
        algo, finished = f.attrs.get("algorithm"), "finished_at" in f.attrs
        steps = f["steps"]["step"].shape[0] if "steps" in f else -1
    if algo != model.cfg.algo.algo or steps != model.step or not finished:
        return (f"{model.source} (a {model.cfg.algo.algo} model after {model.step} steps) does not belong to {results} "
                f"({algo}, {steps} steps, {'finished' if finished else 'unfinished'}): a stale model folder?")
    return None


def write_final_eval(results: Path, model: FinalModel, metrics: dict[str, float], samples: int, evaluator,
                     ranks: int) -> None:
    """Rank 0: the metrics as /final_eval of the run's file (replacing an earlier one)."""
    with h5py.File(results, "a") as f:
        if "final_eval" in f:
            del f["final_eval"]
        g = f.create_group("final_eval")
        for name, value in metrics.items():
            g.create_dataset(name, data=np.float64(value))
        g.attrs.update(step=model.step, samples=samples, is_splits=evaluator.is_splits, eval_ranks=ranks,
                       weights_sha256=model.digest, model=Path(model.source).name,
                       extractors_json=json.dumps(evaluator.describe()), evaluated_at=utc_now())


def report(results: list[dict], out: str | None) -> None:
    """Rank 0: one metric per line (IS as mean ± std over its splits; proxies flagged), optionally JSON."""
    for result in results:
        for key, value in result.items():
            parts = key.split("_")
            if "std" in parts or (key == "is_splits" and not value):
                continue
            text = f"{value:.6g}" if isinstance(value, float) else str(value)
            if "is" in parts and isinstance(value, float):  # e.g. proxy_is_rank0 with proxy_is_std_rank0
                at = parts.index("is") + 1
                std = result.get("_".join(parts[:at] + ["std"] + parts[at:]), float("nan"))
                text += f" ± {std:.3g} (mean ± std over {result['is_splits']} splits)"
            note = "   (proxy: not comparable with published numbers)" if key.startswith("proxy_") else ""
            print(f"{key:>28}: {text}{note}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results[0], indent=1, sort_keys=True) + "\n")
        get_logger().info("metrics written to %s", out)
