"""Staging buffers: where a tensor goes when the transport cannot take it where it lives.

A transport takes some device types as they are (its ``direct`` set: MPI and gloo take host
memory, a CUDA-aware MPI also takes device memory, NCCL takes device memory only). A tensor on any
other device is copied into a buffer on the transport's device, the collective runs on the buffer,
and the result is copied back. The buffers are kept per role ("send", "recv") and reused across
calls, grown to the largest payload seen and never shrunk, so a training step allocates nothing
once the first step has run. Host buffers are page-locked (pinned) when CUDA is available, so the
device-host copies run at full PCIe/NVLink speed and need no bounce buffer in the driver.

Copies are synchronous: a device-to-host copy into a pinned buffer returns once the data is on the
host (the transport reads it right after), and the copy back returns once the data is on the
device, so a buffer is never rewritten while a copy from it is still in flight.
"""
from __future__ import annotations

import torch


class Staging:
    def __init__(self, device: torch.device):
        self.device = device
        self.pinned = device.type == "cpu" and torch.cuda.is_available()
        self._slots: dict[str, torch.Tensor] = {}

    def buffer(self, slot: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        """A 1-D tensor of ``numel`` elements of ``dtype`` at the start of the reusable buffer ``slot``."""
        nbytes = numel * dtype.itemsize
        buf = self._slots.get(slot)
        if buf is None or buf.numel() < nbytes:
            buf = torch.empty(nbytes, dtype=torch.uint8, device=self.device, pin_memory=self.pinned)
            self._slots[slot] = buf
        return buf[:nbytes].view(dtype)

    def nbytes(self) -> int:
        """Bytes held by the staging buffers."""
        return sum(b.numel() for b in self._slots.values())
