"""mpi4py communicator: buffer-based collectives on contiguous tensors (no pickling).

Host tensors go to MPI as numpy views of their memory. CUDA tensors are staged through reused,
pinned host buffers by the base class (:mod:`.staging`), unless MPI reads device memory itself:
``--cuda-aware-mpi yes``, or ``auto`` (the default) when the MPI library reports CUDA support
(:func:`cuda_support`). Then device tensors go to MPI as they are, through their
``__cuda_array_interface__`` (mpi4py's buffer protocol for device arrays), after the current CUDA
stream has finished writing them. Every primitive moves raw bytes where it can (allgather,
broadcast, neighbour exchange), so any dtype works, bfloat16 included.

16-bit floats are summed by an MPI user-defined reduction (:func:`half_sum_op`) whose function is
the C kernel of ``cast.c``: every pair of partial sums is added in fp32 and rounded once to 16 bits
(the correctly rounded 16-bit sum), the way Horovod's own fp16 MPI op sums. MPI only sees 2-byte
elements and a commutative op, so it picks the same algorithms as for a dense sum.
"""
from __future__ import annotations

import ctypes
import os
import re
from functools import lru_cache

import torch
from mpi4py import MPI

from ..compress import cast
from ..config import CommConfig
from ..log import get_logger
from ..netmodel import NetworkModel
from .base import BACKENDS, Communicator
from .control import ControlChannel


#: MPI datatypes of the torch dtypes MPI sums (every other primitive moves raw bytes)
_MPI_TYPES = {torch.float32: MPI.FLOAT, torch.float64: MPI.DOUBLE, torch.int32: MPI.INT32_T,
              torch.int64: MPI.INT64_T, torch.uint8: MPI.UINT8_T, torch.int8: MPI.INT8_T, torch.int16: MPI.INT16_T}


def _message(t: torch.Tensor, datatype: MPI.Datatype = MPI.BYTE) -> list:
    """``[buffer, datatype]`` of the contiguous ``t``, as mpi4py reads and writes it: host memory by
    address (a numpy view costs a few microseconds more per call, and a buffer without its datatype
    another one, which a 4 KiB collective feels), or the device tensor's bytes (CUDA-aware MPI; the
    stream is synchronised first, since MPI accesses device memory outside torch's stream order).
    MPI counts ``datatype`` elements in the bytes: raw bytes by default, or the values of a sum."""
    if t.is_cpu:
        return [MPI.buffer.fromaddress(t.data_ptr(), t.nbytes), datatype]
    torch.cuda.current_stream(t.device).synchronize()
    return [t.detach().view(torch.uint8), datatype]


def _loaded_mpi_libraries() -> list[str]:
    """Paths of the MPI libraries mapped into this process (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if re.match(r"libmpi[\w.-]*\.so", os.path.basename(p)))


@lru_cache(maxsize=1)
def cuda_support() -> bool:
    """Whether the MPI library mpi4py runs on says it reads and writes GPU memory: the
    ``MPIX_Query_cuda_support`` extension of Open MPI and MPICH (``MPIX_Query_hip_support`` on ROCm
    builds of torch), looked up in the loaded library. False when the library has no such query."""
    query = "MPIX_Query_hip_support" if torch.version.hip else "MPIX_Query_cuda_support"
    for path in _loaded_mpi_libraries():
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            continue
        if hasattr(lib, query):
            return bool(getattr(lib, query)())
    return False


def uses_device_memory(setting: str, supported: bool) -> bool:
    """``--cuda-aware-mpi``: yes = hand device memory to MPI, no = stage through host memory,
    auto = hand it over exactly when the library reports CUDA support."""
    return {"yes": True, "no": False, "auto": supported}[setting]


@lru_cache(maxsize=None)
def half_sum_op(dtype: torch.dtype) -> MPI.Op:
    """The MPI op that sums 16-bit floats of ``dtype`` (fp16 or bf16) carried as ``MPI.UINT16_T``:
    ``inout = lowp(fp32(in) + fp32(inout))``, by the C kernel where available, else torch (same
    bits). Commutative bit for bit (x + y = y + x), so every rank of an allreduce gets the same
    result whatever algorithm MPI runs; created on first use, after MPI is initialised."""
    kernel = cast.sum_kernel(dtype)

    def add(inbuf, outbuf, datatype) -> None:
        if kernel is not None:
            kernel(inbuf.address, outbuf.address, outbuf.nbytes // 2)
        elif outbuf.nbytes:
            cast.add_(torch.frombuffer(outbuf, dtype=dtype), torch.frombuffer(inbuf, dtype=dtype))

    return MPI.Op.Create(add, commute=True)


def allreduce_half(comm: MPI.Comm, t: torch.Tensor) -> None:
    """In-place sum of the contiguous 1-D host tensor ``t`` (fp16 or bf16) over ``comm``."""
    comm.Allreduce(MPI.IN_PLACE, _message(t, MPI.UINT16_T), op=half_sum_op(t.dtype))


@BACKENDS.register("mpi")
class MPICommunicator(Communicator):
    name = "mpi"

    def __init__(self, comm: MPI.Comm | None = None, net: NetworkModel | None = None, cuda_aware: str = "auto",
                 emulate: str = "account"):
        self.comm = MPI.COMM_WORLD if comm is None else comm
        # Training data moves on a duplicate: its collectives (some on the transport worker) can
        # never match a control message sent on the job's communicator by another thread.
        self.data = self.comm.Dup()
        supported = cuda_support()
        self.cuda_aware = uses_device_memory(cuda_aware, supported)
        if self.cuda_aware and not supported and self.comm.rank == 0:
            get_logger().warning("--cuda-aware-mpi yes: the MPI library does not report CUDA support; "
                                 "handing it device memory anyway")
        super().__init__(self.comm.rank, self.comm.size, net, ControlChannel(self.comm),
                         direct=frozenset({"cpu", "cuda"} if self.cuda_aware else {"cpu"}), emulate=emulate)
        self._graphs: dict[tuple, MPI.Distgraphcomm] = {}

    @classmethod
    def from_config(cls, cfg: CommConfig, comm=None) -> "MPICommunicator":
        return cls(comm, NetworkModel(cfg.net_latency, cfg.net_bandwidth), cfg.cuda_aware_mpi, cfg.net_emulate)

    def _allreduce(self, t: torch.Tensor) -> None:
        self.data.Allreduce(MPI.IN_PLACE, _message(t, _MPI_TYPES[t.dtype]), op=MPI.SUM)

    def _allreduce_half(self, t: torch.Tensor) -> None:
        """The sum runs on the host (:func:`half_sum_op`): device tensors (CUDA-aware MPI) go
        through the host staging buffer."""
        if t.device.type == "cpu":
            allreduce_half(self.data, t)
        else:
            x = self._stage(t)
            allreduce_half(self.data, x)
            t.copy_(x)

    def _allgather(self, t: torch.Tensor, out: torch.Tensor, counts: list[int]) -> None:
        if counts.count(counts[0]) == len(counts):  # equal parts: plain Allgather
            self.data.Allgather(_message(t), _message(out))
            return
        width = t.element_size()
        buffer, byte = _message(out)
        self.data.Allgatherv(_message(t), [buffer, [c * width for c in counts], byte])

    def _broadcast(self, t: torch.Tensor, root: int) -> None:
        self.data.Bcast(_message(t), root=root)

    def _neighbor_allgather(self, x: torch.Tensor, out: torch.Tensor, plan) -> None:
        """Neighbor_allgather over a distributed-graph communicator, one per plan, created on first
        use (collectively)."""
        key = (plan.sources, plan.destinations)
        if key not in self._graphs:
            self._graphs[key] = self.data.Create_dist_graph_adjacent(list(plan.sources), list(plan.destinations),
                                                                     reorder=False)
        self._graphs[key].Neighbor_allgather(_message(x), _message(out))

    def barrier(self) -> None:
        self.data.Barrier()
