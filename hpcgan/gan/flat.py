"""FlatParams: the parameters (and gradients) of several modules as views of one vector.

After ``FlatParams({"G": g, "D": d})`` every parameter's ``.data`` and ``.grad`` are views into
``flat.params`` and ``flat.grads``, so an algorithm communicates, compresses or mixes a whole model
with one call on one contiguous buffer, and optimizers that update parameters in place keep the
flat vector current. ``ranges[name]`` is the slice of each module; ``sizes`` the per-tensor
lengths, for compressors that keep one scale per tensor; ``starts`` where each tensor begins (and,
last, where the vector ends); ``indices[name]`` the positions of a module's tensors in ``param_list``.
"""
from __future__ import annotations

import torch
from torch import nn


class FlatParams:
    def __init__(self, modules: dict[str, nn.Module]):
        self.modules = modules
        self.names: list[str] = list(modules)
        params = [p for m in modules.values() for p in m.parameters()]
        if len({id(p) for p in params}) != len(params):
            raise ValueError("modules share parameters; FlatParams needs disjoint parameter sets")
        self.param_list = params
        self.sizes = [p.numel() for p in params]
        self.starts = [0]
        for n in self.sizes:
            self.starts.append(self.starts[-1] + n)
        ref = params[0]
        self.params = torch.cat([p.detach().reshape(-1) for p in params]).to(ref.dtype)
        self.grads = torch.zeros_like(self.params)
        offset = 0
        for p, n in zip(params, self.sizes):
            p.data = self.params[offset:offset + n].view_as(p)
            p.grad = self.grads[offset:offset + n].view_as(p)
            offset += n
        self.ranges: dict[str, slice] = {}
        self.indices: dict[str, range] = {}
        first = 0
        for name, m in modules.items():
            count = sum(1 for _ in m.parameters())
            self.indices[name] = range(first, first + count)
            self.ranges[name] = slice(self.starts[first], self.starts[first + count])
            first += count

    def __len__(self) -> int:
        return self.params.numel()

    def tensor_sizes(self, name: str | None = None) -> list[int]:
        """Per-tensor lengths of one module (or of all), in flat order."""
        if name is None:
            return list(self.sizes)
        return [p.numel() for p in self.modules[name].parameters()]

    def set_grads(self, name: str, grads: list[torch.Tensor]) -> None:
        """Write gradients (as from ``torch.autograd.grad``) of module ``name`` into the flat buffer."""
        torch.cat([g.reshape(-1) for g in grads], out=self.grads[self.ranges[name]])
