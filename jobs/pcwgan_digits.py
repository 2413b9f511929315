"""pcwgan vs cwgan on digits under one wall-clock budget (issue 6 experiment).

    mpiexec -n 2 python -m mpi4py jobs/pcwgan_digits.py --budget 180 --out-dir results/pcwgan_digits

Uses only hpcgan's own pieces: the proxy classifier of ``hpcgan eval --train-proxy --data digits``
(trained here if missing), ``hpcgan train`` (same flags; paper settings --n-critic 5 --lr 1e-4
--beta1 0.5 --beta2 0.9, same model/width/batch for both methods), the quality metrics the
trainer records in each results file's /eval at the end (proxy_fid, proxy_class_consistency,
proxy_is), and hpcgan.grid for a 10x10 sample grid per method (row c = label c). Writes
<algo>.h5, <algo>_grid.png and metrics.json into --out-dir.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hpcgan.__main__ import build_parser
from hpcgan.algorithms import resolve_config
from hpcgan.config import given_values
from hpcgan.data import build_dataset
from hpcgan.errors import UsageError
from hpcgan.evaluate import train_proxy_command
from hpcgan.grid import save_grid
from hpcgan.log import setup_logging
from hpcgan.metrics.proxy import load_proxy
from hpcgan.results.reader import load_run
from hpcgan.train import Trainer
from hpcgan.world import init_world

PAPER = ["--n-critic", "5", "--lr", "1e-4", "--beta1", "0.5", "--beta2", "0.9"]


def ensure_proxy(world) -> float:
    """Held-out accuracy of the digits proxy classifier, training it first if there is none."""
    try:
        return float(load_proxy(build_dataset("digits")).meta["test_accuracy"])  # every rank reads it
    except UsageError:
        return float(train_proxy_command("digits", world, epochs=10, out=None)["proxy_test_accuracy"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget", type=float, default=180.0)
    p.add_argument("--algos", default="pcwgan,cwgan")
    p.add_argument("--model", default="mlp")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out-dir", default="results/pcwgan_digits")
    args = p.parse_args()
    world = init_world()
    setup_logging(world.rank)
    out = Path(args.out_dir)
    results = {"proxy_heldout_accuracy": ensure_proxy(world), "budget_s": args.budget, "ranks": world.size}
    if world.rank == 0:
        print(f"proxy classifier held-out accuracy: {results['proxy_heldout_accuracy']:.4f}", flush=True)
    labels = torch.arange(10).repeat_interleave(10)
    for algo in args.algos.split(","):
        flags = ["train", "--algo", algo, "--data", "digits", "--model", args.model, "--width", str(args.width),
                 "--batch-size", str(args.batch_size), "--budget", str(args.budget), *PAPER,
                 "--out", str(out / f"{algo}.h5"), "--force", "--log-every", "200"]
        trainer = Trainer(resolve_config(given_values(build_parser().parse_args(flags))), world)
        h5 = trainer.run()  # evaluates at the end into /eval (collective)
        with torch.no_grad():
            fake = trainer.algo.sample(labels)  # collective for pcwgan
        if world.rank == 0:
            run = load_run(h5)
            grid = save_grid(fake, out / f"{algo}_grid.png", nrow=10)
            results[algo] = {**run.final_eval(), "steps_per_rank": [int(n) for n in (run.steps["step"] >= 0).sum(0)],
                             "grid": str(grid), "h5": str(h5), "command": "hpcgan " + " ".join(flags)}
            print(algo, json.dumps(results[algo]), flush=True)
        world.comm.Barrier()
    if world.rank == 0:
        (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
