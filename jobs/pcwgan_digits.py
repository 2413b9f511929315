"""pcwgan vs cwgan on digits under one wall-clock budget (issue 6 experiment).

    mpiexec -n 2 python jobs/pcwgan_digits.py --budget 180 --out-dir results/pcwgan_digits

Trains each method in turn through the normal Trainer (results file per method), then samples
100 images per label from the trained conditional model (pcwgan: every rank generates its own
labels), and on rank 0 computes classifier-FID and class-consistency with a small digits
classifier (jobs/digits_proxy.py) and writes a 10x10 grid PNG (row c = label c) and metrics.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from torchvision.utils import save_image

sys.path.insert(0, str(Path(__file__).parent))
from digits_proxy import proxy_metrics, train_classifier  # noqa: E402

from hpcgan.config import RunConfig  # noqa: E402
from hpcgan.data import build_dataset  # noqa: E402
from hpcgan.log import setup_logging  # noqa: E402
from hpcgan.train import Trainer  # noqa: E402
from hpcgan.world import init_world  # noqa: E402

PER_LABEL = 100


def step_counts(path: str) -> dict:
    """Steps each rank took, its median step time, and pcwgan's per-label steps."""
    with h5py.File(path, "r") as f:
        step, wall = f["steps"]["step"][()], f["steps"]["wall"][()]
        got = {"steps_per_rank": [int((step[:, r] >= 0).sum()) for r in range(step.shape[1])],
               "median_step_s": float(np.nanmedian(wall[5:]))}
        if "labels" in f:
            got["label_steps"] = f["labels"]["steps"][()].tolist()
            got["label_owner"] = f["labels"]["owner"][()].tolist()
    return got


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
    data = build_dataset("digits")
    labels = torch.arange(10).repeat_interleave(PER_LABEL)
    results = {}
    if world.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        net, acc = train_classifier(data.images, data.labels)
        results["classifier_heldout_accuracy"] = acc
    for algo in args.algos.split(","):
        cfg = RunConfig().replace(
            algo={"algo": algo}, data={"data": "digits", "batch_size": args.batch_size},
            model={"model": args.model, "width": args.width},
            optim={"lr": 1e-4, "beta1": 0.5, "beta2": 0.9, "n_critic": 5},
            run={"budget": args.budget, "out": str(out / f"{algo}.h5"), "force": True, "log_every": 200})
        trainer = Trainer(cfg, world)
        trainer.run()
        fake = trainer.algo.sample(labels)  # collective for pcwgan
        if world.rank == 0:
            m = proxy_metrics(net, data.images, fake, labels)
            grid = torch.stack([fake[labels == c][:10] for c in range(10)]).flatten(0, 1)
            save_image(grid * 0.5 + 0.5, out / f"{algo}_grid.png", nrow=10)
            results[algo] = {**m, **step_counts(cfg.run.out), "grid": str(out / f"{algo}_grid.png"),
                             "h5": cfg.run.out}
            print(algo, json.dumps(results[algo]), flush=True)
        world.comm.Barrier()
    if world.rank == 0:
        (out / "metrics.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
