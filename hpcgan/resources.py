"""Will a run fit? The memory one rank needs, estimated before training allocates it, against the
memory its device has (:func:`check_fits`, called once before training).

The estimate is a lower bound, so a run that fits is never refused:

1. the models (generator and critic, built on the ``meta`` device: shapes only, no memory) give
   the parameter bytes; gradients take as much again;
2. the optimizer keeps at least ``OPTIMIZER_STATES`` copies of every parameter (Adam: two moments);
3. one forward pass of one example through G and then D gives the bytes of every layer's output
   per example, all kept for the backward pass; times the local batch, plus the batch itself.
   (Outputs grow linearly with the batch: no layer mixes examples. The pass runs on host copies
   of the models, which the run builds anyway, unless they would take half the host's
   available memory: then on ``meta`` tensors, whose first forward costs about 2 s of start-up,
   importing torch's meta kernels -- every rank paid that on every run before. A conditional
   model's embedding, initialised on ``meta``, still pays it.)

Per-label algorithms hold more than one pair, error feedback and gossip keep further copies,
and the allocator rounds up: the real need is larger. What the device has: for the CPU, the
memory available now (``MemAvailable``, within the cgroup limit) shared by the ranks on the node;
for a GPU, its free memory shared by the ranks on it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import UsageError

#: Copies of the parameters each optimizer keeps at least (omd: the previous gradient).
OPTIMIZER_STATES = {"adam": 2, "oadam": 2, "omd": 1}


@dataclass(frozen=True)
class Estimate:
    """Bytes one rank needs at least, by kind."""

    parameters: int     # weights and their gradients
    optimizer: int      # optimizer state
    activations: int    # layer outputs kept for the backward pass, and the batch

    @property
    def total(self) -> int:
        return self.parameters + self.optimizer + self.activations


def estimate(cfg, spec, conditional: bool) -> Estimate:
    """What one rank training ``cfg`` on data of ``spec`` needs at least (steps 1-3 above)."""
    from .gan.models import build_models

    with torch.device("meta"):
        G, D = build_models(spec, cfg.model, conditional)
    params = sum(p.numel() * p.element_size() for m in (G, D) for p in m.parameters())
    where = "cpu" if 2 * params < _host_available() else "meta"
    if where == "cpu":  # (not to_empty: it, too, imports the meta kernels)
        with torch.random.fork_rng(devices=[]):  # the run's own initialisation draws stay untouched
            G, D = build_models(spec, cfg.model, conditional)
    batch, outputs = cfg.data.batch_size, [0]

    def count(module: nn.Module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            outputs[0] += output.numel() * output.element_size()
    hooks = [m.register_forward_hook(count) for net in (G, D) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad(), torch.device(where):
            y = [torch.zeros(1, dtype=torch.int64)] if conditional else []
            D(G(torch.zeros(1, cfg.model.z_dim), *y), *y)
    finally:
        for h in hooks:
            h.remove()
    data = batch * math.prod(spec.shape) * 4
    return Estimate(2 * params, OPTIMIZER_STATES.get(cfg.optim.optimizer, 0) * params, batch * outputs[0] + data)


def available_memory(device: torch.device | None = None, sharers: int = 1) -> int:
    """Bytes this process may still allocate on ``device`` (default: the CPU), shared by ``sharers``."""
    if device is not None and device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // sharers
    return _host_available() // sharers


def _host_available() -> int:
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # cgroup v2: a job's own limit (Slurm, containers)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(free, 0)


def check_fits(cfg, spec, world) -> None:
    """UsageError, one line, when this rank's estimated need exceeds what its device has."""
    from .algorithms import ALGORITHMS

    if world.device.type == "cuda":
        sharers = math.ceil(world.local_size / max(torch.cuda.device_count(), 1))
        where = f"{world.device} has"
    else:
        sharers, where = world.local_size, f"host {world.host} has"
    room = available_memory(world.device, sharers)
    need = estimate(cfg, spec, getattr(ALGORITHMS.get(cfg.algo.algo), "conditional", False))
    if need.total > room:
        gib = 2 ** 30
        share = f" for each of its {sharers} ranks" if sharers > 1 else ""
        raise UsageError(f"this run needs at least {need.total / gib:.1f} GiB per rank (parameters and gradients "
                         f"{need.parameters / gib:.1f}, optimizer {need.optimizer / gib:.1f}, activations of a "
                         f"--batch-size {cfg.data.batch_size} batch {need.activations / gib:.1f}) but {where} "
                         f"{room / gib:.1f} GiB available{share}; use a smaller --width or --batch-size")
